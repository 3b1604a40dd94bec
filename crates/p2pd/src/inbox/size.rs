//! How many bytes an inbox entry takes in a page as sent, so pages are cut
//! by what goes over the socket, not by text alone.

/// What one entry costs in a page besides its `from` and `text`: the field
/// names, `kind`, the largest `id` and `seq`, the 20-byte `at`, quotes and
/// the comma between entries. An upper bound (checked by a test), so that a
/// page of a million empty messages is counted at its real size, not zero.
pub(crate) const ENTRY_OVERHEAD: usize = 128;

/// Upper bound of the bytes one entry takes in a JSON page as sent.
pub(crate) fn wire_len(from: &str, text: &str) -> usize {
    ENTRY_OVERHEAD
        .saturating_add(json_str_len(from))
        .saturating_add(json_str_len(text))
}

/// Upper bound of a string's length as JSON, quotes included: `"` and `\`
/// take two bytes, control characters at most six (`\u001b`).
fn json_str_len(s: &str) -> usize {
    s.bytes().fold(2usize, |n, b| {
        n.saturating_add(match b {
            b'"' | b'\\' => 2,
            0..=0x1f => 6,
            _ => 1,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_proto::ctl::{InboxEntry, InboxKind};
    use p2p_proto::time::rfc3339;
    use proptest::prelude::*;

    proptest! {
        /// [`wire_len`] is never below the real size of the entry in a page.
        #[test]
        fn wire_len_is_an_upper_bound(
            from in ".{0,40}",
            text in "(.|[\\x00-\\x1f\"\\\\]){0,200}",
            id in any::<u64>(),
            seq in any::<u64>(),
            at_ms in any::<i64>(),
            broadcast in any::<bool>(),
        ) {
            let kind = if broadcast { InboxKind::Broadcast } else { InboxKind::Message };
            let e = InboxEntry { kind, from: from.clone(), text: text.clone(), id, at: rfc3339(at_ms), seq };
            let real = serde_json::to_vec(&e).unwrap().len() + 1;
            prop_assert!(wire_len(&from, &text) >= real, "{} < {}", wire_len(&from, &text), real);
        }
    }
}
