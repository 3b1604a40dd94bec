//! Presence rows: which instance holds each user's one session, until when
//! (the lease), and what invitations need of it (key and reach).
//!
//! The row is the truth across instances: the last login to write it holds
//! the user. A login that takes the row from another instance's session
//! sends that session a `replaced` kick through the bus in the same
//! transaction; the lease renewal is the safety net (a session whose row
//! another instance holds is closed, a row this instance holds for a
//! session that has ended is deleted, a row that expired is written again).

use p2p_proto::time;
use p2p_proto::wire::{CloseReason, OnlineUser};

use super::{BusEvent, Cluster};
use crate::error::Result;
use crate::pg::PgError;
use crate::reach::Reach;
use crate::Shared;

/// Locks a map whose entries stay consistent even if a holder panicked.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// Sessions here whose claim is written: user → session.
    fn claimed(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u64>> {
        lock(&self.claimed)
    }

    /// The lease end for a row written or renewed now.
    fn lease_end(&self) -> i64 {
        time::now_ms() + self.cfg.lease.as_millis() as i64
    }

    /// Takes `user` for session `session` here. A session of the user on
    /// another instance is told it was replaced.
    pub(crate) async fn claim(
        &self,
        user: &str,
        session: u64,
        since_ms: i64,
        public_key: &str,
        reach: &Reach,
    ) -> Result<()> {
        let reach = serde_json::to_string(reach).map_err(PgError::from)?;
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(PgError::from)?;
        let old = tx
            .query_opt(
                "SELECT instance_id, session_id FROM presence WHERE username = $1 FOR UPDATE",
                &[&user],
            )
            .await
            .map_err(PgError::from)?;
        let q = tx
            .prepare_cached(
                "INSERT INTO presence (username, instance_id, session_id, since_ms,
                                       lease_expires_ms, public_key, reach)
                 VALUES ($1, $2, $3, $4, $5, $6, CAST($7::text AS jsonb))
                 ON CONFLICT (username) DO UPDATE SET
                     instance_id = EXCLUDED.instance_id, session_id = EXCLUDED.session_id,
                     since_ms = EXCLUDED.since_ms, lease_expires_ms = EXCLUDED.lease_expires_ms,
                     public_key = EXCLUDED.public_key, reach = EXCLUDED.reach",
            )
            .await
            .map_err(PgError::from)?;
        tx.execute(
            &q,
            &[
                &user,
                &self.instance,
                &(session as i64),
                &since_ms,
                &self.lease_end(),
                &public_key,
                &reach,
            ],
        )
        .await
        .map_err(PgError::from)?;
        if let Some(row) = old {
            let (instance, old_session): (String, i64) = (row.get(0), row.get(1));
            // A session of ours was replaced locally already.
            if instance != self.instance {
                let kick = BusEvent::Kick(CloseReason::Replaced);
                Self::send_in(&tx, &instance, user, old_session as u64, &kick).await?;
            }
        }
        tx.commit().await.map_err(PgError::from)?;
        self.claimed().insert(user.to_string(), session);
        Ok(())
    }

    /// Records that `user`'s session `session` could not claim its row:
    /// the next lease renewal claims it.
    pub(crate) fn claim_failed(&self, user: &str, session: u64) {
        lock(&self.unclaimed).insert(user.to_string(), session);
    }

    /// Claims again the rows of sessions whose claim failed.
    async fn claim_again(&self, shared: &Shared) -> Result<()> {
        let waiting: Vec<(String, u64)> = lock(&self.unclaimed).drain().collect();
        for (i, (user, session)) in waiting.iter().enumerate() {
            let Some(peer) = shared.presence.peer(user).filter(|p| p.session == *session) else {
                continue;
            };
            let claimed = self
                .claim(user, *session, peer.since_ms, &peer.public_key, &peer.reach)
                .await;
            if let Err(e) = claimed {
                let mut unclaimed = lock(&self.unclaimed);
                for (u, s) in &waiting[i..] {
                    unclaimed.entry(u.clone()).or_insert(*s);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Deletes `user`'s row if it is still this session's.
    pub(crate) async fn release(&self, user: &str, session: u64) -> Result<()> {
        {
            let mut unclaimed = lock(&self.unclaimed);
            if unclaimed.get(user) == Some(&session) {
                unclaimed.remove(user);
            }
        }
        {
            let mut claimed = self.claimed();
            if claimed.get(user) == Some(&session) {
                claimed.remove(user);
            }
        }
        let c = self.pool.get().await?;
        c.execute(
            "DELETE FROM presence WHERE username = $1 AND instance_id = $2 AND session_id = $3",
            &[&user, &self.instance, &(session as i64)],
        )
        .await
        .map_err(PgError::from)?;
        Ok(())
    }

    /// Deletes every row of this instance (at a clean stop).
    pub(super) async fn release_all(&self) -> Result<()> {
        let c = self.pool.get().await?;
        c.execute(
            "DELETE FROM presence WHERE instance_id = $1",
            &[&self.instance],
        )
        .await
        .map_err(PgError::from)?;
        Ok(())
    }

    /// Everyone online on any instance whose lease has not run out, sorted
    /// by name.
    pub(crate) async fn list(&self) -> Result<Vec<OnlineUser>> {
        let c = self.pool.get().await?;
        let q = c
            .prepare_cached(
                "SELECT username, since_ms FROM presence
                 WHERE lease_expires_ms > $1 ORDER BY username",
            )
            .await
            .map_err(PgError::from)?;
        let rows = c
            .query(&q, &[&time::now_ms()])
            .await
            .map_err(PgError::from)?;
        Ok(rows
            .iter()
            .map(|r| OnlineUser {
                user: r.get(0),
                since_ms: r.get(1),
            })
            .collect())
    }

    /// Renews this instance's leases and puts rows and sessions back in
    /// agreement (see the module doc), then deletes rows whose lease ran
    /// out (any instance may; a killed instance's users leave `list`).
    pub(super) async fn renew(&self, shared: &Shared) -> Result<()> {
        self.claim_again(shared).await?;
        let c = self.pool.get().await?;
        let held = c
            .query(
                "UPDATE presence SET lease_expires_ms = $2 WHERE instance_id = $1
                 RETURNING username, session_id",
                &[&self.instance, &self.lease_end()],
            )
            .await
            .map_err(PgError::from)?;
        let mut mine = std::collections::HashSet::new();
        for row in &held {
            let (user, session): (String, i64) = (row.get(0), row.get(1));
            if shared.presence.holds(&user, session as u64) {
                mine.insert(user);
            } else {
                self.release(&user, session as u64).await?;
            }
        }
        // Sessions still claiming are not in `claimed` yet: their row may
        // still be the previous login's.
        let claimed: Vec<(String, u64)> = self
            .claimed()
            .iter()
            .map(|(u, s)| (u.clone(), *s))
            .collect();
        for (user, session) in claimed {
            if mine.contains(&user) || !shared.presence.holds(&user, session) {
                continue;
            }
            let row = c
                .query_opt(
                    "SELECT instance_id, session_id FROM presence WHERE username = $1",
                    &[&user],
                )
                .await
                .map_err(PgError::from)?;
            match row {
                // Taken over by a newer login whose kick was lost. (The row
                // may also be this very session's, claimed after the UPDATE
                // above read the rows: nothing to do then.)
                Some(r) => {
                    let (instance, held): (String, i64) = (r.get(0), r.get(1));
                    if instance != self.instance || held as u64 != session {
                        shared
                            .presence
                            .kick_session(&user, session, CloseReason::Replaced);
                    }
                }
                // The lease ran out while the database was out of reach, or
                // the session is still claiming: write it (never over another
                // login's row).
                None => {
                    let Some(peer) = shared.presence.peer(&user).filter(|p| p.session == session)
                    else {
                        continue;
                    };
                    let reach = serde_json::to_string(&peer.reach).map_err(PgError::from)?;
                    c.execute(
                        "INSERT INTO presence (username, instance_id, session_id, since_ms,
                                               lease_expires_ms, public_key, reach)
                         VALUES ($1, $2, $3, $4, $5, $6, CAST($7::text AS jsonb))
                         ON CONFLICT (username) DO NOTHING",
                        &[
                            &user,
                            &self.instance,
                            &(peer.session as i64),
                            &peer.since_ms,
                            &self.lease_end(),
                            &peer.public_key,
                            &reach,
                        ],
                    )
                    .await
                    .map_err(PgError::from)?;
                }
            }
        }
        c.execute(
            "DELETE FROM presence WHERE lease_expires_ms <= $1",
            &[&time::now_ms()],
        )
        .await
        .map_err(PgError::from)?;
        Ok(())
    }

    /// The lease driver: renews every third of the lease until stopped.
    pub(super) async fn leases(&self, shared: &Shared) {
        let mut tick = tokio::time::interval(self.cfg.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = self.renew(shared).await {
                        tracing::warn!(cause = %e, "cannot renew presence leases");
                    }
                }
            }
        }
    }
}
