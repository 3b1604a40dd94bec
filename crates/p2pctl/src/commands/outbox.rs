//! `outbox` (messages queued for contacts without a session) and
//! `history USER [--limit N]` (both directions of a conversation).

use p2p_proto::ctl::{Command, Direction, HistoryList, OutboxList};

use crate::client::Client;
use crate::localtime::human;
use crate::{safe, Failure};

/// `outbox`: oldest first.
pub(crate) fn outbox(c: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = c.call::<OutboxList>(Command::Outbox)?;
    super::print(doc, json, |o: OutboxList| {
        if o.outbox.is_empty() {
            println!("the outbox is empty");
        }
        for m in o.outbox {
            println!(
                "{}  to {} (message {}): {}",
                safe::line(&human(&m.at)),
                safe::line(&m.to),
                m.id,
                safe::text(&m.text)
            );
        }
    })
}

/// `history USER [--limit N]`: oldest first; sent messages with their
/// status.
pub(crate) fn history(
    c: &mut Client,
    user: String,
    limit: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    let doc = c.call::<HistoryList>(Command::History {
        user: user.clone(),
        limit,
    })?;
    super::print(doc, json, |h: HistoryList| {
        if h.history.is_empty() {
            println!("no messages with {}", safe::line(&user));
        }
        for m in h.history {
            let at = human(&m.at);
            match m.dir {
                Direction::In => println!(
                    "{}  {}: {}",
                    safe::line(&at),
                    safe::line(&user),
                    safe::text(&m.text)
                ),
                Direction::Out => println!(
                    "{}  me ({}): {}",
                    safe::line(&at),
                    m.status.as_str(),
                    safe::text(&m.text)
                ),
            }
        }
    })
}
