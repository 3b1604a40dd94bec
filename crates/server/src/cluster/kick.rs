//! `p2p-server kick USER` on any instance: the session is closed on the
//! instance that holds it, through the session bus.

use p2p_proto::time;
use p2p_proto::wire::CloseReason;

use super::{BusEvent, Cluster};
use crate::error::Result;
use crate::pg::PgError;

impl Cluster {
    /// Tells the instance holding `user`'s session (per its unexpired
    /// presence row) to end it as an operator's logout; false if `user` is
    /// online nowhere.
    pub(crate) async fn kick(&self, user: &str) -> Result<bool> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await.map_err(PgError::from)?;
        let row = tx
            .query_opt(
                "SELECT instance_id, session_id FROM presence
                 WHERE username = $1 AND lease_expires_ms > $2",
                &[&user, &time::now_ms()],
            )
            .await
            .map_err(PgError::from)?;
        let Some(row) = row else {
            return Ok(false);
        };
        let (instance, session): (String, i64) = (row.get(0), row.get(1));
        let kick = BusEvent::Kick(CloseReason::LoggedOut);
        Self::send_in(&tx, &instance, user, session as u64, &kick).await?;
        tx.commit().await.map_err(PgError::from)?;
        Ok(true)
    }
}
