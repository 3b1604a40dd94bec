//! `history USER`: both directions of a conversation, from the `inbox`
//! (received) and `sent` tables of `inbox.db`, in the order they happened:
//! a received message at when it arrived (its send time for rows stored
//! before arrival times were kept), a sent one at when it was sent.

use p2p_proto::ctl::{Direction, HistoryEntry, SendStatus};
use p2p_proto::time::rfc3339;
use rusqlite::params;

use super::store::{effective, upto, Status};
use crate::error::Result;
use crate::inbox::{fit, lossy, Inbox};

/// `history` lists this many messages unless `--limit` says otherwise.
pub(crate) const DEFAULT_LIMIT: u64 = 50;

/// Most messages one `history` lists: beyond this, scrolling a terminal is
/// the wrong tool (the inbox and the database are there).
pub(crate) const MAX_LIMIT: u64 = 10_000;

/// The newest `?2` messages received from `?1`. In two halves, each on its
/// index (`inbox_peer_mid`, `inbox_peer_no_mid`): a partial index serves
/// only a query that names its condition.
pub(super) const RECEIVED: &str =
    "SELECT seq, msg_id, text, at_ms, COALESCE(recv_ms, at_ms) AS t FROM inbox
     WHERE kind = 'message' AND peer = ?1 AND mid IS NOT NULL
     UNION ALL
     SELECT seq, msg_id, text, at_ms, COALESCE(recv_ms, at_ms) AS t FROM inbox
     WHERE kind = 'message' AND peer = ?1 AND mid IS NULL
     ORDER BY t DESC, seq DESC LIMIT ?2";

/// The newest `?2` messages sent to `?1`.
pub(super) const SENT: &str = "SELECT seq, text, at_ms, status, now FROM sent
     WHERE peer = ?1 ORDER BY at_ms DESC, seq DESC LIMIT ?2";

/// One message of the conversation, before formatting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// When it happened (ordering), Unix ms.
    pub(crate) when_ms: i64,
    /// Tie-break among equal times: received before sent, then by row.
    order: (u8, i64),
    pub(crate) dir: Direction,
    pub(crate) text: String,
    /// When it was sent, Unix ms (shown).
    pub(crate) at_ms: i64,
    pub(crate) status: Status,
    pub(crate) id: u64,
}

impl Item {
    /// As the control protocol shows it.
    pub(crate) fn entry(self) -> HistoryEntry {
        HistoryEntry {
            dir: self.dir,
            text: self.text,
            at: rfc3339(self.at_ms),
            status: match self.status {
                Status::Queued => SendStatus::Queued,
                Status::Delivered => SendStatus::Delivered,
                Status::Failed => SendStatus::Failed,
            },
            id: self.id,
        }
    }
}

/// The newest `limit` messages with `peer` (at most `max_bytes` of text,
/// at least one), oldest first. Blocking.
pub(crate) fn conversation(
    db: &Inbox,
    peer: &str,
    limit: u64,
    max_bytes: usize,
) -> Result<Vec<Item>> {
    let limit = limit.min(MAX_LIMIT) as i64;
    let mut items = db.with_conn(|c| {
        let mut items = Vec::new();
        let mut q = c.prepare_cached(RECEIVED)?;
        let rows = q.query_map(params![peer, limit], |r| {
            Ok(Item {
                when_ms: r.get(4)?,
                order: (0, r.get(0)?),
                dir: Direction::In,
                // As `inbox` lists it: whatever the file holds, cut to size.
                text: fit(lossy(r.get_ref(2)?)),
                at_ms: r.get(3)?,
                status: Status::Delivered,
                id: r.get::<_, i64>(1)? as u64,
            })
        })?;
        for r in rows {
            items.push(r?);
        }
        let mark = upto(c, peer)?;
        let mut q = c.prepare_cached(SENT)?;
        let rows = q.query_map(params![peer, limit], |r| {
            let seq: i64 = r.get(0)?;
            Ok(Item {
                when_ms: r.get(2)?,
                order: (1, seq),
                dir: Direction::Out,
                text: r.get(1)?,
                at_ms: r.get(2)?,
                status: effective(r.get_ref(3)?.as_str()?, r.get(4)?, seq, mark),
                id: seq as u64,
            })
        })?;
        for r in rows {
            items.push(r?);
        }
        Ok(items)
    })?;
    Ok(newest(&mut items, limit as usize, max_bytes))
}

/// The newest `limit` of `items` that fit `max_bytes` of text (at least
/// one), oldest first.
fn newest(items: &mut [Item], limit: usize, max_bytes: usize) -> Vec<Item> {
    items.sort_by_key(|i| std::cmp::Reverse((i.when_ms, i.order)));
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for it in items.iter().take(limit) {
        bytes = bytes.saturating_add(it.text.len());
        if !out.is_empty() && bytes > max_bytes {
            break;
        }
        out.push(it.clone());
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(when_ms: i64, dir: Direction, seq: i64) -> Item {
        Item {
            when_ms,
            order: (u8::from(dir == Direction::Out), seq),
            dir,
            text: format!("{when_ms}"),
            at_ms: when_ms,
            status: Status::Delivered,
            id: seq as u64,
        }
    }

    #[test]
    fn the_newest_are_kept_and_listed_oldest_first() {
        let mut items = vec![
            item(30, Direction::Out, 2),
            item(10, Direction::In, 1),
            item(20, Direction::Out, 1),
            item(30, Direction::In, 2),
        ];
        let texts = |v: &[Item]| -> Vec<(i64, Direction)> {
            v.iter().map(|i| (i.when_ms, i.dir)).collect()
        };
        let all = newest(&mut items.clone(), 10, usize::MAX);
        assert_eq!(
            texts(&all),
            [
                (10, Direction::In),
                (20, Direction::Out),
                (30, Direction::In),
                (30, Direction::Out)
            ]
        );
        let two = newest(&mut items, 2, usize::MAX);
        assert_eq!(texts(&two), [(30, Direction::In), (30, Direction::Out)]);
        // The byte budget keeps the newest, and at least one.
        let one = newest(&mut two.clone(), 10, 1);
        assert_eq!(texts(&one), [(30, Direction::Out)]);
    }
}
