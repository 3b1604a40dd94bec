//! `contacts`, `forget`, `block`, `unblock`, `verify`, `trust` (SPEC §11):
//! standing consent, and the safety numbers that show a contact's key is
//! theirs.

use std::io::IsTerminal;

use p2p_proto::ctl::{Command, ContactDone, ContactList, TrustDone, VerifyDone};

use crate::client::Client;
use crate::localtime;
use crate::{safe, Failure};

/// `contacts`: a table of contacts, then the blocked users.
pub(crate) fn list(c: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = c.call::<ContactList>(Command::Contacts)?;
    super::print(doc, json, |l: ContactList| {
        if l.contacts.is_empty() {
            println!("no contacts yet (an accepted invitation makes one)");
        } else {
            let rows: Vec<Vec<String>> = l
                .contacts
                .iter()
                .map(|c| {
                    let state = if c.held {
                        "KEY CHANGED (held until trust)"
                    } else if c.key_changed {
                        "KEY CHANGED"
                    } else if c.verified {
                        "verified"
                    } else {
                        "not verified"
                    };
                    let online = if c.online { "online" } else { "-" };
                    vec![
                        safe::line(&c.user).to_string(),
                        online.to_string(),
                        localtime::human(&c.since),
                        state.to_string(),
                    ]
                })
                .collect();
            super::table(&["CONTACT", "SESSION", "SINCE", "KEY"], &rows);
        }
        if !l.blocked.is_empty() {
            let blocked: Vec<String> = l
                .blocked
                .iter()
                .map(|u| safe::line(u).to_string())
                .collect();
            println!("blocked: {}", blocked.join(", "));
        }
    })
}

/// `forget USER`, `block USER`, `unblock USER`.
pub(crate) fn change(c: &mut Client, cmd: Command, json: bool) -> Result<(), Failure> {
    let unblock = matches!(cmd, Command::Unblock { .. });
    let doc = c.call::<ContactDone>(cmd)?;
    super::print(doc, json, |d: ContactDone| {
        let user = safe::line(&d.user);
        match (unblock, d.blocked, d.forgotten) {
            (true, _, _) => println!("unblocked {user}: their invitations are shown again"),
            (false, true, _) => println!("blocked {user}: their invitations are ignored"),
            (false, false, true) => println!("forgot {user}: their next invitation asks you again"),
            (false, false, false) => println!("{user} was not a contact"),
        }
        if d.dropped > 0 {
            println!("dropped {} queued message(s) to {user}", d.dropped);
        }
    })
}

/// `verify USER [--confirm] [--qr]`: the safety number (and, with `--qr`
/// on a terminal, a QR code of it; never in JSON).
pub(crate) fn verify(
    c: &mut Client,
    user: String,
    confirm: bool,
    qr: bool,
    json: bool,
) -> Result<(), Failure> {
    let doc = c.call::<VerifyDone>(Command::Verify { user, confirm })?;
    super::print(doc, json, |d: VerifyDone| {
        let v = d.verify;
        let user = safe::line(&v.user);
        println!("safety number with {user}:");
        println!();
        for line in groups_in_lines(&v.safety_number) {
            println!("    {line}");
        }
        println!();
        if qr && std::io::stdout().is_terminal() {
            if let Some(code) = qr_code(&v.safety_number) {
                println!("{code}");
            }
        }
        if v.held {
            println!(
                "{user}'s key CHANGED after you verified it: this is the number of the new key. \
                 Compare it with {user} (in person or on a call), then: p2pctl trust {user}"
            );
        } else if v.verified {
            println!("{user} is verified");
        } else {
            println!(
                "compare it with {user} (in person or on a call); if it matches: \
                 p2pctl verify {user} --confirm"
            );
        }
    })
}

/// `trust USER`: accept a contact's new key.
pub(crate) fn trust(c: &mut Client, user: String, json: bool) -> Result<(), Failure> {
    let doc = c.call::<TrustDone>(Command::Trust { user })?;
    super::print(doc, json, |d: TrustDone| {
        let user = safe::line(&d.trusted);
        println!("trusting {user}'s current key; sessions with {user} open again");
        println!("(not verified: compare the safety number with p2pctl verify {user})");
    })
}

/// The groups of a safety number, four to a line (as people read it out).
fn groups_in_lines(number: &str) -> Vec<String> {
    let groups: Vec<&str> = number.split(' ').collect();
    groups.chunks(4).map(|c| c.join(" ")).collect()
}

/// A QR code of `text` in Unicode half blocks (two rows per line), light
/// on dark as terminals show best; `None` if it cannot be encoded.
fn qr_code(text: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safety_numbers_print_four_groups_a_line() {
        let n = p2p_proto::safety::safety_number(&[1; 32], &[2; 32]);
        let lines = groups_in_lines(&n);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.split(' ').count() == 4));
        assert_eq!(lines.join(" "), n);
    }

    #[test]
    fn a_safety_number_fits_a_qr_code() {
        let n = p2p_proto::safety::safety_number(&[1; 32], &[2; 32]);
        let code = qr_code(&n).unwrap();
        assert!(code.lines().count() > 10);
        assert!(code.contains('\u{2588}') || code.contains('\u{2580}'));
    }
}
