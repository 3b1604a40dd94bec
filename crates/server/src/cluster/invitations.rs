//! Invitations across instances (SPEC §3 and §9): with `--database`, every
//! invitation is a row of `invitations`, bound to the two sessions that
//! made and received it by (instance, session id), with an id from one
//! sequence, so ids are unique across the cluster.
//!
//! - `invite` looks the invitee up in the presence rows (lease not run
//!   out); the Invitation event goes to its session through the bus, or
//!   straight to it when it is on this instance. The inviter's rate limits
//!   are this instance's ([`crate::invitations::Invitations::check_sender`]):
//!   the inviter's session is here; the invitee's counts the receipts in
//!   the database, so it holds across instances.
//! - `answer`, the expiry driver and a session's end each take the row
//!   with `DELETE ... RETURNING`, so exactly one of them ends an invitation,
//!   and tell the other side in the same transaction (bus rows are sent on
//!   commit only).
//! - Relay tokens are this instance's (crate::relay): an accepted pair
//!   gets them only when both sessions are here; a pair across instances
//!   gets none and connects directly.
//!
//! Failures of the database refuse the one request ([`Refused::Database`]);
//! an invitation whose end could not be told expires, and the expiry is
//! run by every instance, so a killed instance's invitations end too.

use std::net::IpAddr;
use std::time::Duration;

use deadpool_postgres::Transaction;
use p2p_proto::time;
use p2p_proto::wire::{Contact, InviteEnd, ServerEvent, ServerMsg};
use tokio::time::Instant;

use super::{BusEvent, Cluster};
use crate::error::Result;
use crate::invite_limits::InviteLimits;
use crate::pg::PgError;
use crate::reach::{contact, Reach};
use crate::refused::Refused;
use crate::Shared;

/// Receipts are swept every this many expiry polls (a minute at the
/// default poll): they only cost a little space until then.
const RECEIPT_SWEEP_POLLS: u32 = 60;

/// The columns every statement taking an invitation row returns, in
/// [`Invite::from_row`]'s order.
const RETURNING: &str =
    "RETURNING id, inviter, from_instance, from_session, invitee, to_instance, to_session";

/// An open invitation, as its row holds it.
struct Invite {
    id: u64,
    inviter: String,
    from_instance: String,
    from_session: u64,
    invitee: String,
    to_instance: String,
    to_session: u64,
}

impl Invite {
    fn from_row(r: &tokio_postgres::Row) -> Invite {
        Invite {
            id: r.get::<_, i64>(0) as u64,
            inviter: r.get(1),
            from_instance: r.get(2),
            from_session: r.get::<_, i64>(3) as u64,
            invitee: r.get(4),
            to_instance: r.get(5),
            to_session: r.get::<_, i64>(6) as u64,
        }
    }

    /// What the inviter's session is told.
    fn to_inviter(&self, event: ServerEvent) -> Tell {
        Tell {
            instance: self.from_instance.clone(),
            user: self.inviter.clone(),
            session: self.from_session,
            msg: ServerMsg::Event { event },
        }
    }

    /// What both sides are told when it ends unanswered (or rejected
    /// after one side left): as `Invitations::tell_ended` locally.
    fn ended(&self, reason: InviteEnd) -> [Tell; 2] {
        tracing::debug!(invite = self.id, from = %self.inviter, to = %self.invitee, ?reason, "invitation ended");
        [
            self.to_inviter(ServerEvent::Declined {
                invite: self.id,
                to: self.invitee.clone(),
                reason,
            }),
            Tell {
                instance: self.to_instance.clone(),
                user: self.invitee.clone(),
                session: self.to_session,
                msg: ServerMsg::Event {
                    event: ServerEvent::InvitationClosed {
                        invite: self.id,
                        reason,
                    },
                },
            },
        ]
    }
}

/// One message for one session, wherever it is.
struct Tell {
    instance: String,
    user: String,
    session: u64,
    msg: ServerMsg,
}

/// A failed query refuses the request; the cause is logged, never sent.
fn db_failed(e: impl std::fmt::Display) -> Refused {
    tracing::warn!(cause = %e, "invitation refused: the database failed");
    Refused::Database
}

/// Pushes `tells` (all for sessions here); false if any did not go.
fn push_here(shared: &Shared, tells: Vec<Tell>) -> bool {
    let mut all = true;
    for t in tells {
        all &= shared.presence.push(&t.user, t.session, t.msg);
    }
    all
}

/// The limit on invitations `to` receives, from everyone on every
/// instance together: the receipts within the window, as
/// `rate::SlidingWindow` counts its events (the same answer, too).
async fn invitee_limit(
    tx: &Transaction<'_>,
    limits: InviteLimits,
    to: &str,
    now_ms: i64,
) -> std::result::Result<(), Refused> {
    let window_ms = limits.window.as_millis() as i64;
    let row = tx
        .query_one(
            "SELECT count(*), min(at_ms) FROM invitation_receipts
             WHERE invitee = $1 AND at_ms > $2",
            &[&to, &(now_ms - window_ms)],
        )
        .await
        .map_err(db_failed)?;
    let (count, oldest): (i64, Option<i64>) = (row.get(0), row.get(1));
    let wait = match oldest {
        _ if limits.per_invitee == 0 => limits.window,
        Some(oldest) if count >= i64::from(limits.per_invitee) => {
            Duration::from_millis((oldest + window_ms - now_ms).max(0) as u64)
        }
        _ => return Ok(()),
    };
    Err(Refused::InviteRate {
        what: format!("{to} has too many invitations"),
        wait,
    })
}

impl Cluster {
    /// Sends the `tells` for sessions on other instances through the bus
    /// inside `tx`; returns those for sessions here, to push once `tx` has
    /// committed (before, an answer could race the row).
    async fn tell_others(&self, tx: &Transaction<'_>, tells: Vec<Tell>) -> Result<Vec<Tell>> {
        let mut here = Vec::new();
        for t in tells {
            if t.instance == self.instance {
                here.push(t);
            } else {
                let event = BusEvent::Push(Box::new(t.msg));
                Self::send_in(tx, &t.instance, &t.user, t.session, &event).await?;
            }
        }
        Ok(here)
    }

    /// Commits `tx` (which took invitation rows and sent the bus part of
    /// `tells`), then pushes the rest; false if a push here failed.
    async fn tell(&self, shared: &Shared, tx: Transaction<'_>, tells: Vec<Tell>) -> Result<bool> {
        let here = self.tell_others(&tx, tells).await?;
        tx.commit().await.map_err(PgError::from)?;
        Ok(push_here(shared, here))
    }

    /// `from` (session `from_session` here, connected from `ip`) invites
    /// `to`, which may be any string: unknown names and accounts offline on
    /// every instance are both `not_online`. Returns the id and expiry.
    pub(crate) async fn invite(
        &self,
        shared: &Shared,
        from: &str,
        from_session: u64,
        ip: IpAddr,
        to: &str,
    ) -> std::result::Result<(u64, i64), Refused> {
        if from == to {
            return Err(Refused::InviteSelf);
        }
        let now = Instant::now();
        shared.invitations.check_sender(from, ip, now)?;
        let not_online = || Refused::NotOnline(to.to_string());
        let mut c = self.pool.get().await.map_err(db_failed)?;
        let tx = c.transaction().await.map_err(db_failed)?;
        let row = tx
            .query_opt(
                "SELECT instance_id, session_id FROM presence
                 WHERE username = $1 AND lease_expires_ms > $2",
                &[&to, &time::now_ms()],
            )
            .await
            .map_err(db_failed)?;
        let Some(row) = row else {
            return Err(not_online());
        };
        let (to_instance, to_session): (String, i64) = (row.get(0), row.get(1));
        let now_ms = time::now_ms();
        invitee_limit(&tx, shared.invitations.limits(), to, now_ms).await?;
        let expires_ms = now_ms + shared.invitations.ttl().as_millis() as i64;
        let id: i64 = tx
            .query_one(
                "INSERT INTO invitations (id, inviter, from_instance, from_session,
                                          invitee, to_instance, to_session, expires_ms)
                 VALUES (nextval('invitation_ids'), $1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    &from,
                    &self.instance,
                    &(from_session as i64),
                    &to,
                    &to_instance,
                    &to_session,
                    &expires_ms,
                ],
            )
            .await
            .map_err(db_failed)?
            .get(0);
        tx.execute(
            "INSERT INTO invitation_receipts (invite, invitee, at_ms) VALUES ($1, $2, $3)",
            &[&id, &to, &now_ms],
        )
        .await
        .map_err(db_failed)?;
        let tell = Tell {
            instance: to_instance,
            user: to.to_string(),
            session: to_session as u64,
            msg: ServerMsg::Event {
                event: ServerEvent::Invitation {
                    invite: id as u64,
                    from: from.to_string(),
                    expires_ms,
                },
            },
        };
        if !self.tell(shared, tx, vec![tell]).await.map_err(db_failed)? {
            // On this instance but gone or not reading: as locally.
            let c = self.pool.get().await.map_err(db_failed)?;
            c.execute(
                "WITH gone AS (DELETE FROM invitations WHERE id = $1)
                 DELETE FROM invitation_receipts WHERE invite = $1",
                &[&id],
            )
            .await
            .map_err(db_failed)?;
            return Err(not_online());
        }
        shared.invitations.record(from, to, ip, now);
        Ok((id as u64, expires_ms))
    }

    /// `me` (session `session` here) answers invitation `id`. On
    /// acceptance returns the inviter's contact; the inviter has been sent
    /// ours. Relay tokens only when both sessions are here (see the module
    /// doc).
    pub(crate) async fn answer(
        &self,
        shared: &Shared,
        me: &str,
        session: u64,
        id: u64,
        accept: bool,
    ) -> std::result::Result<Option<Contact>, Refused> {
        let mut c = self.pool.get().await.map_err(db_failed)?;
        let tx = c.transaction().await.map_err(db_failed)?;
        let taken = tx
            .query_opt(
                &format!(
                    "DELETE FROM invitations WHERE id = $1 AND invitee = $2
                     AND to_instance = $3 AND to_session = $4 {RETURNING}"
                ),
                &[&(id as i64), &me, &self.instance, &(session as i64)],
            )
            .await
            .map_err(db_failed)?;
        let Some(inv) = taken.as_ref().map(Invite::from_row) else {
            return Err(Refused::NoInvitation(id));
        };
        if !accept {
            let declined = inv.to_inviter(ServerEvent::Declined {
                invite: id,
                to: inv.invitee.clone(),
                reason: InviteEnd::Rejected,
            });
            self.tell(shared, tx, vec![declined])
                .await
                .map_err(db_failed)?;
            return Ok(None);
        }
        let inviter = if inv.from_instance == self.instance {
            // Here: as locally (its row may not be written yet).
            shared
                .presence
                .peer(&inv.inviter)
                .filter(|p| p.session == inv.from_session)
                .map(|p| (p.public_key, p.reach))
        } else {
            self.peer_row(&tx, &inv).await?
        };
        // Our own contact must be this session's: a newer login of ours has
        // no record of the invitation and would refuse the inviter's link.
        let mine = shared.presence.peer(me).filter(|p| p.session == session);
        let (Some((inviter_key, inviter_reach)), Some(mine)) = (inviter, mine) else {
            // The row is gone: the inviter (if still there) must not wait
            // for an expiry that will never come.
            let [to_inviter, _] = inv.ended(InviteEnd::Offline);
            self.tell(shared, tx, vec![to_inviter])
                .await
                .map_err(db_failed)?;
            return Err(Refused::NoLongerOnline(inv.inviter));
        };
        let (inviter_token, my_token) = if inv.from_instance == self.instance {
            shared
                .relay
                .issue(&inv.inviter, me, Instant::now())
                .map_or((None, None), |(a, b)| (Some(a), Some(b)))
        } else {
            (None, None)
        };
        let to_inviter = contact(
            me,
            &mine.public_key,
            &mine.reach,
            &inviter_reach,
            inviter_token,
        );
        let to_me = contact(
            &inv.inviter,
            &inviter_key,
            &inviter_reach,
            &mine.reach,
            my_token,
        );
        let accepted = inv.to_inviter(ServerEvent::Accepted {
            invite: id,
            contact: to_inviter,
        });
        if !self
            .tell(shared, tx, vec![accepted])
            .await
            .map_err(db_failed)?
        {
            return Err(Refused::NoLongerOnline(inv.inviter));
        }
        tracing::info!(invite = id, from = %inv.inviter, to = %inv.invitee, "invitation accepted");
        Ok(Some(to_me))
    }

    /// The key and reach of `inv`'s inviter on another instance, if that
    /// session still holds the user's presence row.
    async fn peer_row(
        &self,
        tx: &Transaction<'_>,
        inv: &Invite,
    ) -> std::result::Result<Option<(String, Reach)>, Refused> {
        let row = tx
            .query_opt(
                "SELECT public_key, reach::text FROM presence
                 WHERE username = $1 AND instance_id = $2 AND session_id = $3
                 AND lease_expires_ms > $4",
                &[
                    &inv.inviter,
                    &inv.from_instance,
                    &(inv.from_session as i64),
                    &time::now_ms(),
                ],
            )
            .await
            .map_err(db_failed)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let reach = serde_json::from_str(row.get::<_, &str>(1)).map_err(db_failed)?;
        Ok(Some((row.get(0), reach)))
    }

    /// Session `session` of `user` here ended: its open invitations end
    /// too ("offline"), and the other sides are told.
    pub(crate) async fn invitations_ended(
        &self,
        shared: &Shared,
        user: &str,
        session: u64,
    ) -> Result<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(PgError::from)?;
        let rows = tx
            .query(
                &format!(
                    "DELETE FROM invitations
                     WHERE (inviter = $1 AND from_instance = $2 AND from_session = $3)
                        OR (invitee = $1 AND to_instance = $2 AND to_session = $3) {RETURNING}"
                ),
                &[&user, &self.instance, &(session as i64)],
            )
            .await
            .map_err(PgError::from)?;
        let tells = rows
            .iter()
            .flat_map(|r| Invite::from_row(r).ended(InviteEnd::Offline))
            .collect();
        self.tell(shared, tx, tells).await?;
        Ok(())
    }

    /// Ends every invitation whose expiry has passed, whichever instance
    /// made it (a killed instance's too), telling both sides.
    async fn expire_invitations(&self, shared: &Shared) -> Result<usize> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(PgError::from)?;
        let rows = tx
            .query(
                &format!("DELETE FROM invitations WHERE expires_ms <= $1 {RETURNING}"),
                &[&time::now_ms()],
            )
            .await
            .map_err(PgError::from)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let tells = rows
            .iter()
            .flat_map(|r| Invite::from_row(r).ended(InviteEnd::Expired))
            .collect();
        self.tell(shared, tx, tells).await?;
        for _ in &rows {
            crate::metrics::metrics().invitation("expired");
        }
        Ok(rows.len())
    }

    /// The expiry driver: ends expired invitations every poll interval
    /// (an invitation ends at most one interval after its expiry), until
    /// stopped.
    pub(super) async fn invitation_expiry(&self, shared: &Shared) {
        let mut tick = tokio::time::interval(self.cfg.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut polls = 0u32;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tick.tick() => polls += 1,
            }
            if let Err(e) = self.expire_invitations(shared).await {
                tracing::warn!(cause = %e, "cannot end expired invitations; retrying at the next poll");
            }
            if polls >= RECEIPT_SWEEP_POLLS {
                polls = 0;
                if let Err(e) = self.sweep_receipts(shared).await {
                    tracing::warn!(cause = %e, "cannot delete old invitation receipts");
                }
            }
        }
    }

    /// Deletes the receipts no window counts any more.
    async fn sweep_receipts(&self, shared: &Shared) -> Result<()> {
        let window = shared.invitations.limits().window.as_millis() as i64;
        let c = self.pool.get().await?;
        c.execute(
            "DELETE FROM invitation_receipts WHERE at_ms <= $1",
            &[&(time::now_ms() - window)],
        )
        .await
        .map_err(PgError::from)?;
        Ok(())
    }
}
