//! The delivered mark: per peer, the highest `seq` the peer acknowledged
//! (table `sent_upto`). A plain (`now` = 0) row of `sent` still marked
//! `queued` at or below it is delivered; [`super::store`] says why.

use rusqlite::params;

use super::store::Status;

fn i(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// A row's status as the user sees it, from its `status` column, its `now`
/// tag, its `seq`, and its peer's delivered high-water mark `upto`: a plain
/// message still marked queued at or below `upto` was delivered.
pub(crate) fn effective(status: &str, now: i64, seq: i64, upto: i64) -> Status {
    match Status::parse(status) {
        Status::Queued if now == 0 && seq <= upto => Status::Delivered,
        s => s,
    }
}

/// `peer`'s delivered high-water mark (0: nothing delivered by mark yet).
pub(crate) fn upto(c: &rusqlite::Connection, peer: &str) -> rusqlite::Result<i64> {
    use rusqlite::OptionalExtension;
    let mut q = c.prepare_cached("SELECT upto FROM sent_upto WHERE peer = ?1")?;
    Ok(q.query_row([peer], |r| r.get(0)).optional()?.unwrap_or(0))
}

/// The statuses of a plain command's rows `first..=last` (consecutive, to
/// `peer`) with the delivered mark `mark`: those marked `queued` follow
/// from the mark, so only the others (few, by the `(peer, status, seq)`
/// index) are read, not every row of a command of up to 16 384.
pub(super) fn plain_statuses(
    c: &rusqlite::Connection,
    peer: &str,
    first: u64,
    last: u64,
    mark: i64,
) -> rusqlite::Result<Vec<(u64, Status)>> {
    let mut q = c.prepare_cached(
        "SELECT seq, status FROM sent
         WHERE peer = ?1 AND status IN ('delivered', 'failed') AND seq BETWEEN ?2 AND ?3",
    )?;
    let rows = q.query_map(params![peer, i(first), i(last)], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            Status::parse(r.get_ref(1)?.as_str()?),
        ))
    })?;
    let set: std::collections::HashMap<u64, Status> = rows.collect::<rusqlite::Result<_>>()?;
    Ok((first..=last)
        .map(|seq| {
            let status = set.get(&seq).copied().unwrap_or(if i(seq) <= mark {
                Status::Delivered
            } else {
                Status::Queued
            });
            (seq, status)
        })
        .collect())
}
