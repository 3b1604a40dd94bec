//! What every human-mode command says on stderr from the daemon's greeting
//! (SPEC §11, "being told"): a hint per pending invitation, and a warning
//! for each contact whose key changed that the command touches. One place,
//! so each command only says which of them apply to it.

use p2p_proto::ctl::DaemonHello;

use crate::safe;

/// Which greeting hints a command prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hints {
    /// "alice wants to talk: p2pctl accept alice" per pending invitation
    /// (not for the commands that deal with invitations or stream events).
    pub(crate) pending: bool,
    /// Whose key-change warnings to print.
    pub(crate) keys: Keys,
}

/// Whose key change a command warns about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Keys {
    /// Nobody's.
    None,
    /// This user's, if listed (`connect`, `send`, `chat` USER).
    User(String),
    /// Every listed user's (`sessions`, `contacts`, `status`).
    All,
}

impl Hints {
    /// Nothing at all (`completions`, and before a daemon answered).
    pub(crate) const NONE: Hints = Hints {
        pending: false,
        keys: Keys::None,
    };

    /// Pending-invitation hints only: most commands.
    pub(crate) const PENDING: Hints = Hints {
        pending: true,
        keys: Keys::None,
    };

    /// Invitation hints and every key-change warning: commands that list
    /// people (`sessions`, `contacts`, `status`).
    pub(crate) const EVERY_KEY: Hints = Hints {
        pending: true,
        keys: Keys::All,
    };

    /// The stderr lines for `hello`. With `--json` no invitation hints (a
    /// script asks `requests`), but key warnings still: they are about
    /// whom the command is talking to.
    pub(crate) fn lines(&self, hello: &DaemonHello, json: bool) -> Vec<String> {
        let mut out = Vec::new();
        if self.pending && !json {
            for user in &hello.pending {
                let user = safe::line(user);
                out.push(format!("{user} wants to talk: p2pctl accept {user}"));
            }
        }
        let warn = |user: &str| {
            let user = safe::line(user);
            format!(
                "warning: {user}'s key changed; compare the safety number with p2pctl verify {user}"
            )
        };
        match &self.keys {
            Keys::None => {}
            Keys::User(u) => out.extend(
                hello
                    .key_changed
                    .iter()
                    .filter(|k| *k == u)
                    .map(|k| warn(k)),
            ),
            Keys::All => out.extend(hello.key_changed.iter().map(|k| warn(k))),
        }
        out
    }

    /// Prints [`Hints::lines`] on stderr.
    pub(crate) fn show(&self, hello: &DaemonHello, json: bool) {
        for line in self.lines(hello, json) {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(pending: &[&str], key_changed: &[&str]) -> DaemonHello {
        DaemonHello {
            protocol: 1,
            daemon: "test".into(),
            pending: pending.iter().map(|s| s.to_string()).collect(),
            key_changed: key_changed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn pending_invitations_hint_in_human_mode_only() {
        let h = hello(&["alice", "carol"], &[]);
        assert_eq!(
            Hints::PENDING.lines(&h, false),
            [
                "alice wants to talk: p2pctl accept alice",
                "carol wants to talk: p2pctl accept carol"
            ]
        );
        assert!(Hints::PENDING.lines(&h, true).is_empty());
        assert!(Hints::NONE.lines(&h, false).is_empty());
    }

    #[test]
    fn key_warnings_for_the_user_touched_or_for_all() {
        let h = hello(&[], &["bob", "dave"]);
        let warn = |u: &str| {
            format!("warning: {u}'s key changed; compare the safety number with p2pctl verify {u}")
        };
        let for_user = |u: &str| Hints {
            pending: true,
            keys: Keys::User(u.into()),
        };
        assert_eq!(for_user("bob").lines(&h, false), [warn("bob")]);
        assert!(for_user("carol").lines(&h, false).is_empty());
        assert_eq!(
            Hints::EVERY_KEY.lines(&h, true),
            [warn("bob"), warn("dave")]
        );
    }

    #[test]
    fn names_are_escaped() {
        let h = hello(&["\u{1b}]0;x\u{7}"], &["\u{9b}2J"]);
        for line in Hints::EVERY_KEY.lines(&h, false) {
            assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        }
    }
}
