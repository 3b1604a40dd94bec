//! `contacts`, `forget USER`, `block USER`, `unblock USER` (SPEC §11):
//! the standing consent between users, and the users refused silently.

use std::collections::HashSet;

use p2p_proto::ctl::{ContactDone, ContactInfo, ContactList, CtlError, ErrorCode};
use p2p_proto::time::{self, rfc3339};

use crate::peer::session::SessionCmd;
use crate::Daemon;

fn internal(e: impl std::fmt::Display) -> CtlError {
    CtlError::new(ErrorCode::Internal, e.to_string())
}

/// Runs `contacts`: every contact (online = a session is open now) and
/// the blocked users.
pub(crate) async fn run(daemon: &Daemon) -> Result<ContactList, CtlError> {
    let store = daemon.peers.contacts.clone();
    let (contacts, blocked) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::error::DaemonError>((store.list()?, store.blocked()?))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let online: HashSet<String> = daemon
        .peers
        .sessions()
        .into_iter()
        .map(|s| s.peer)
        .collect();
    let contacts = contacts
        .into_iter()
        .map(|c| ContactInfo {
            online: online.contains(&c.user),
            since: rfc3339(c.since_ms),
            verified: c.verified,
            key: c.key,
            key_changed: c.key_changed,
            held: c.held,
            user: c.user,
        })
        .collect();
    Ok(ContactList { contacts, blocked })
}

/// Ends the session with `user`, if any (both sides see `disconnected`).
async fn close_session(daemon: &Daemon, user: &str) {
    if let Some((_, cmds)) = daemon.peers.session(user) {
        let _ = cmds.send(SessionCmd::Close).await;
    }
}

/// Drops the messages queued for `user` (they are no contact any more, so
/// no session would ever carry them); how many.
async fn drop_queued(daemon: &Daemon, user: &str) -> Result<u64, CtlError> {
    let (outbox, user) = (daemon.outbox.clone(), user.to_string());
    tokio::task::spawn_blocking(move || outbox.drop_queued(&user))
        .await
        .map_err(internal)?
        .map_err(internal)
}

/// Runs `forget USER`: the consent ends, and the session with it; the
/// next invitation from them prompts again.
pub(crate) async fn forget(daemon: &Daemon, user: String) -> Result<ContactDone, CtlError> {
    end_contact(daemon, user, false).await
}

/// Runs `block USER`: forget them, and drop their invitations unseen from
/// now on (they learn nothing: the invitation expires as if unanswered).
pub(crate) async fn block(daemon: &Daemon, user: String) -> Result<ContactDone, CtlError> {
    end_contact(daemon, user, true).await
}

/// `forget` and (with `block`) `block`: the contact goes, the session
/// closes, and what was queued for them is dropped.
async fn end_contact(daemon: &Daemon, user: String, block: bool) -> Result<ContactDone, CtlError> {
    super::check_user(&user)?;
    let who = user.clone();
    let forgotten = daemon
        .peers
        .with_contacts(move |c| {
            if block {
                c.block(&who, time::now_ms())
            } else {
                c.forget(&who)
            }
        })
        .await
        .map_err(internal)?;
    close_session(daemon, &user).await;
    let dropped = drop_queued(daemon, &user).await?;
    Ok(ContactDone {
        user,
        forgotten,
        blocked: block,
        dropped,
    })
}

/// Runs `unblock USER`: their invitations are seen again (they do not
/// become a contact again by this).
pub(crate) async fn unblock(daemon: &Daemon, user: String) -> Result<ContactDone, CtlError> {
    super::check_user(&user)?;
    let who = user.clone();
    daemon
        .peers
        .with_contacts(move |c| c.unblock(&who))
        .await
        .map_err(internal)?;
    Ok(ContactDone {
        user,
        forgotten: false,
        blocked: false,
        dropped: 0,
    })
}
