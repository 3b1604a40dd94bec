//! `verify USER [--confirm]` and `trust USER` (SPEC §11): the safety
//! number of our key and a contact's, and accepting a contact's new key.

use p2p_proto::ctl::{CtlError, ErrorCode, TrustDone, VerifyDone, VerifyInfo};
use p2p_proto::safety::safety_number;

use crate::peer::PeerError;
use crate::Daemon;

fn internal(e: impl std::fmt::Display) -> CtlError {
    CtlError::new(ErrorCode::Internal, e.to_string())
}

fn not_contact(user: String) -> CtlError {
    PeerError::NotContact { user }.into()
}

/// Runs `verify`: the safety number with `user`'s trusted key (for a held
/// contact, with the NEW key: that is what to compare before `trust`).
/// `confirm` marks them verified; a held contact must be trusted first.
pub(crate) async fn run(
    daemon: &Daemon,
    user: String,
    confirm: bool,
) -> Result<VerifyDone, CtlError> {
    super::check_user(&user)?;
    let who = user.clone();
    let contact = daemon
        .peers
        .with_contacts(move |c| {
            if confirm {
                c.confirm(&who)
            } else {
                c.get(&who)
            }
        })
        .await
        .map_err(internal)?
        .ok_or_else(|| not_contact(user.clone()))?;
    if confirm && contact.held {
        return Err(PeerError::KeyChanged { user }.into());
    }
    let key = match (&contact.new_key, contact.held) {
        (Some(new), true) => new.clone(),
        _ => contact.key.clone(),
    };
    let theirs = hex::decode(&key).map_err(|_| {
        CtlError::new(
            ErrorCode::Internal,
            format!("the stored key of {user} is not hex"),
        )
    })?;
    let ours = hex::decode(&daemon.public_key).map_err(internal)?;
    Ok(VerifyDone {
        verify: VerifyInfo {
            safety_number: safety_number(&ours, &theirs),
            verified: contact.verified,
            held: contact.held,
            user,
        },
    })
}

/// Runs `trust`: `user`'s new key is accepted (not verified until its
/// safety number is confirmed), and automatic sessions resume.
pub(crate) async fn trust(daemon: &Daemon, user: String) -> Result<TrustDone, CtlError> {
    super::check_user(&user)?;
    let who = user.clone();
    let contact = daemon
        .peers
        .with_contacts(move |c| c.trust(&who))
        .await
        .map_err(internal)?
        .ok_or_else(|| not_contact(user.clone()))?;
    daemon.peers.resume(&user);
    // A held contact's queued messages go out on the open session now.
    daemon.outbox.wake(&user);
    Ok(TrustDone {
        trusted: user,
        key: contact.key,
    })
}
