//! The session bus: an event for a session held by another instance is a
//! row naming that instance, plus a NOTIFY whose payload is the instance
//! id. The instance takes its rows (deleting them) on the wake-up and at
//! every poll, and applies them to its sessions; an event for a session
//! that has ended since is dropped, as a push to a gone session is locally.

use p2p_proto::time;
use p2p_proto::wire::{CloseReason, ServerMsg};
use serde::{Deserialize, Serialize};

use super::Cluster;
use crate::error::Result;
use crate::pg::PgError;
use crate::Shared;

/// The channel bus wake-ups are sent on (payload: the instance id).
pub(super) const BUS_CHANNEL: &str = "p2p_bus";
/// Events older than this are deleted unread: their instance is gone, and
/// its sessions with it.
const EVENT_LIFE_MS: i64 = 10 * 60 * 1000;

/// What one instance asks of a session on another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BusEvent {
    /// Close the session with this reason.
    Kick(CloseReason),
    /// Write this message to the session (an invitation event).
    Push(Box<ServerMsg>),
}

impl Cluster {
    /// Queues `event` for `user`'s session `session` on `instance`, inside
    /// `tx`: it is sent when `tx` commits, and only then.
    pub(super) async fn send_in(
        tx: &tokio_postgres::Transaction<'_>,
        instance: &str,
        user: &str,
        session: u64,
        event: &BusEvent,
    ) -> Result<()> {
        let event = serde_json::to_string(event).map_err(PgError::from)?;
        tx.execute(
            "INSERT INTO session_events (instance_id, username, session_id, event, created_ms)
             VALUES ($1, $2, $3, CAST($4::text AS jsonb), $5)",
            &[&instance, &user, &(session as i64), &event, &time::now_ms()],
        )
        .await
        .map_err(PgError::from)?;
        tx.execute("SELECT pg_notify($1, $2)", &[&BUS_CHANNEL, &instance])
            .await
            .map_err(PgError::from)?;
        Ok(())
    }

    /// Takes this instance's events and applies them, in the order sent.
    pub(super) async fn drain(&self, shared: &Shared) -> Result<usize> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "DELETE FROM session_events WHERE instance_id = $1
                 RETURNING id, username, session_id, event::text",
                &[&self.instance],
            )
            .await
            .map_err(PgError::from)?;
        let mut events: Vec<(i64, String, i64, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        events.sort_by_key(|e| e.0);
        for (_, user, session, event) in &events {
            let session = *session as u64;
            match serde_json::from_str::<BusEvent>(event) {
                Ok(BusEvent::Kick(reason)) => {
                    shared.presence.kick_session(user, session, reason);
                }
                Ok(BusEvent::Push(msg)) => {
                    shared.presence.push(user, session, *msg);
                }
                Err(e) => tracing::warn!(cause = %e, "unreadable session event; dropped"),
            }
        }
        Ok(events.len())
    }

    /// The bus driver: drains on each wake-up and every poll interval, and
    /// deletes events nobody took in time, until stopped.
    pub(super) async fn bus(&self, shared: &Shared) {
        let mut tick = tokio::time::interval(self.cfg.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweeps = 0u32;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.bus_wake.notified() => {}
                _ = tick.tick() => sweeps += 1,
            }
            if let Err(e) = self.drain(shared).await {
                tracing::warn!(cause = %e, "cannot read session events; retrying at the next poll");
            }
            if sweeps >= 60 {
                sweeps = 0;
                if let Err(e) = self.sweep().await {
                    tracing::warn!(cause = %e, "cannot delete stale session events");
                }
            }
        }
    }

    async fn sweep(&self) -> Result<()> {
        let c = self.pool.get().await?;
        c.execute(
            "DELETE FROM session_events WHERE created_ms < $1",
            &[&(time::now_ms() - EVENT_LIFE_MS)],
        )
        .await
        .map_err(PgError::from)?;
        Ok(())
    }
}
