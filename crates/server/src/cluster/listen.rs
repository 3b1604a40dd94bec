//! The LISTEN connection: one per instance, outside the pool, named
//! `p2p-server-listen` in `pg_stat_activity`. A notification only wakes a
//! driver (the feed on a broadcast, the bus on an event for this
//! instance); the drivers read the rows. When the connection drops it is
//! made again after a pause, and both drivers are woken, since
//! notifications sent meanwhile were lost.

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls};

use super::bus::BUS_CHANNEL;
use super::{Cluster, LISTEN_RETRY};
use crate::pg::{DbTls, PgError, BROADCAST_CHANNEL};

/// `application_name` of the listening connection.
pub(crate) const LISTEN_APPLICATION: &str = "p2p-server-listen";

impl Cluster {
    /// Wakes the drivers everything may have been missed by.
    fn wake_all(&self) {
        self.feed_wake.notify_one();
        self.bus_wake.notify_one();
    }

    /// Listens until stopped, re-making the connection after a drop.
    pub(super) async fn listen(&self) {
        loop {
            match self.listen_once().await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(cause = %e, "the LISTEN connection dropped; polling until it is back")
                }
            }
            self.wake_all();
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(LISTEN_RETRY) => {}
            }
        }
    }

    /// One connection's life: Ok when stopped, Err when it failed.
    async fn listen_once(&self) -> Result<(), PgError> {
        let mut config = crate::pg::connection_config(&self.cfg.url, LISTEN_APPLICATION)?;
        match crate::pg::db_tls(&mut config, self.cfg.ca.as_deref())? {
            DbTls::Plain => self.listen_on(config.connect(NoTls).await?).await,
            DbTls::Verified(tls) => self.listen_on(config.connect(tls).await?).await,
        }
    }

    /// Subscribes on `client` and passes its notifications on until stopped.
    async fn listen_on<S, T>(
        &self,
        (client, mut connection): (Client, Connection<S, T>),
    ) -> Result<(), PgError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
        // The connection's messages (notifications among them) come only
        // from polling it; this stream ends when the connection does.
        let drive = async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(PgError::from(e)),
                }
            }
            Ok(())
        };
        tokio::pin!(drive);
        let listen = format!("LISTEN {BROADCAST_CHANNEL}; LISTEN {BUS_CHANNEL}");
        let subscribe = client.batch_execute(&listen);
        tokio::select! {
            ended = &mut drive => return ended.and(Err(PgError::ListenClosed)),
            subscribed = subscribe => subscribed?,
        }
        // Anything sent before the LISTEN took effect was missed.
        self.wake_all();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                ended = &mut drive => return ended.and(Err(PgError::ListenClosed)),
                Some((channel, payload)) = notes.recv() => {
                    if channel == BROADCAST_CHANNEL {
                        self.feed_wake.notify_one();
                    } else if channel == BUS_CHANNEL && payload == self.instance {
                        self.bus_wake.notify_one();
                    }
                }
            }
        }
    }
}
