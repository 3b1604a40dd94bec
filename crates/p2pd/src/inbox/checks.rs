//! What the inbox refuses or repairs on the way in and out: broadcasts a
//! server may not send, and rows a damaged file (or an older version) left.

use p2p_proto::limits::{MAX_BROADCAST_BYTES, MAX_MESSAGE_BYTES};

/// Why a broadcast the server delivered cannot be stored, if it cannot: a
/// sender that is not a valid user name, or a text over
/// [`MAX_BROADCAST_BYTES`] (the server refuses those, so only a broken or
/// hostile server sends one; stored, it would be an inbox entry no page
/// could hold).
pub fn refuse_broadcast(from: &str, text: &str) -> Option<String> {
    if let Err(e) = p2p_proto::names::validate_username(from) {
        return Some(format!("bad sender name: {e}"));
    }
    (text.len() > MAX_BROADCAST_BYTES).then(|| {
        format!(
            "text of {} bytes is over the {MAX_BROADCAST_BYTES}-byte limit",
            text.len()
        )
    })
}

/// Longest text an entry is listed with. Nothing longer can arrive now
/// (peers: [`MAX_MESSAGE_BYTES`], the server: [`MAX_BROADCAST_BYTES`]), but
/// an older version stored broadcasts of any length and a file can be
/// edited; a longer one is cut, so every entry fits in a control line.
pub(crate) const MAX_LISTED_TEXT: usize = MAX_MESSAGE_BYTES;

/// Marks a text cut by [`fit`].
const CUT_MARK: &str = " [...cut: too long]";

/// `text`, cut to [`MAX_LISTED_TEXT`] (on a character boundary) and marked.
pub(crate) fn fit(mut text: String) -> String {
    if text.len() > MAX_LISTED_TEXT {
        let mut end = MAX_LISTED_TEXT - CUT_MARK.len();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(CUT_MARK);
    }
    text
}

/// A column as text, whatever the file holds there.
pub(crate) fn lossy(v: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Inbox;
    use super::*;
    use rusqlite::params;

    #[test]
    fn broadcasts_a_server_may_not_send_are_refused() {
        assert_eq!(
            refuse_broadcast("alice", &"x".repeat(MAX_BROADCAST_BYTES)),
            None
        );
        assert!(refuse_broadcast("alice", &"x".repeat(MAX_BROADCAST_BYTES + 1)).is_some());
        assert!(refuse_broadcast("", "hi").is_some());
        assert!(refuse_broadcast("Alice\u{1b}[2J", "hi").is_some());
        assert!(refuse_broadcast(&"a".repeat(33), "hi").is_some());
    }

    /// Rows a damaged file (or an older version) left: a text far over any
    /// limit, bytes that are not UTF-8, a number where text belongs. Each
    /// is listed, and every entry fits in a control line.
    #[test]
    fn damaged_rows_are_listed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::open(dir.path()).unwrap();
        {
            let conn = inbox.lock();
            let huge = "é".repeat(5_000_000);
            let insert = "INSERT INTO inbox (kind, peer, msg_id, text, at_ms) VALUES ('broadcast', ?1, 1, ?2, 0)";
            conn.execute(insert, params!["admin", huge]).unwrap();
            conn.execute(insert, params![vec![0xffu8, 0xfe], vec![b'a', 0xff]])
                .unwrap();
            conn.execute(insert, params![7, 8]).unwrap();
        }
        let (page, more) = inbox.page(true, None, 0, usize::MAX).unwrap();
        assert!(!more);
        assert_eq!(page.len(), 3);
        assert!(page[0].text.len() <= MAX_LISTED_TEXT && page[0].text.ends_with(CUT_MARK));
        assert_eq!(page[1].text, "a\u{fffd}");
        assert_eq!((page[2].from.as_str(), page[2].text.as_str()), ("7", "8"));
        let listed: Vec<p2p_proto::ctl::InboxEntry> = page.into_iter().map(Into::into).collect();
        let line = serde_json::to_vec(&listed).unwrap();
        assert!(line.len() < p2p_proto::limits::MAX_CTL_RESPONSE);
    }
}
