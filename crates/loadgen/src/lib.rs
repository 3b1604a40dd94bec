//! Protocol-level load against a real `p2p-server`: hundreds of logged-in
//! clients in one process, each speaking the real wire protocol over real
//! TLS (the daemon's pinned-TLS client), without a daemon per user.
//!
//! [`broadcast_scale`] is both a test (the counts are checked by
//! `tests/broadcast_scale.rs`) and a benchmark (`p2p-load` prints the
//! timings that go in `docs/BENCHMARKS.md`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use futures::{SinkExt, StreamExt};
use p2p_proto::wire::{Auth, ClientMsg, Reply, Request, ServerEvent, ServerMsg};
use p2p_testkit::TestServer;
use p2pd::tlsclient::ClientTls;

pub mod dbstats;
pub mod scenarios;
pub mod server_proc;
pub mod servers;
pub mod spray;

/// Every wait in a scenario gives up after this.
pub const STEP_DEADLINE: Duration = Duration::from_secs(120);

/// The password every generated user has.
pub const PASSWORD: &str = "load-test-password";

/// A logged-in protocol client.
pub struct Client {
    conn: spray::Conn,
    next_id: u64,
    token: p2p_proto::Secret,
    /// This user's TLS configuration: its session tickets make the next
    /// connection a resumed handshake.
    tls: Arc<ClientTls>,
}

impl Client {
    /// Connects, pins `fingerprint`, logs in as `user`.
    pub async fn login(addr: SocketAddr, fingerprint: &str, user: &str) -> Result<Client, String> {
        Self::login_on(addr, None, fingerprint, user).await
    }

    /// As [`Client::login`], from source address `from` (any of 127.0.0.0/8
    /// works on loopback), to test per-source limits on one machine.
    pub async fn login_from(
        addr: SocketAddr,
        from: IpAddr,
        fingerprint: &str,
        user: &str,
    ) -> Result<Client, String> {
        Self::login_on(addr, Some(from), fingerprint, user).await
    }

    async fn login_on(
        addr: SocketAddr,
        from: Option<IpAddr>,
        fingerprint: &str,
        user: &str,
    ) -> Result<Client, String> {
        let tls = ClientTls::new(Some(fingerprint.to_string())).map_err(|e| e.to_string())?;
        Self::login_with(addr, from, tls, user, spray::password(PASSWORD)).await
    }

    /// Reconnects as `user` with the resume token a previous login gave
    /// (no password check) and the TLS configuration of that login (a
    /// resumed TLS session), as a daemon does.
    pub async fn resume(
        addr: SocketAddr,
        tls: Arc<ClientTls>,
        user: &str,
        token: p2p_proto::Secret,
    ) -> Result<Client, String> {
        Self::login_with(addr, None, tls, user, Auth::Token { token }).await
    }

    async fn login_with(
        addr: SocketAddr,
        from: Option<IpAddr>,
        tls: Arc<ClientTls>,
        user: &str,
        auth: Auth,
    ) -> Result<Client, String> {
        let mut conn = spray::connect_with(addr, &tls, from).await?;
        match spray::send_login(&mut conn, user, auth).await {
            Ok(ServerMsg::LoginOk { token, .. }) => Ok(Client {
                conn,
                next_id: 0,
                token,
                tls,
            }),
            other => Err(format!("{user}: login failed: {other:?}")),
        }
    }

    /// The resume token this session's login gave.
    pub fn token(&self) -> &p2p_proto::Secret {
        &self.token
    }

    /// This user's TLS configuration (to reconnect with [`Client::resume`]).
    pub fn tls(&self) -> Arc<ClientTls> {
        self.tls.clone()
    }

    /// Whether this connection's TLS handshake was a resumption.
    pub fn tls_resumed(&self) -> bool {
        self.conn.get_ref().get_ref().1.handshake_kind()
            == Some(tokio_rustls::rustls::HandshakeKind::Resumed)
    }

    /// Sends a request and returns the server's reply to it (skipping
    /// unsolicited messages in between).
    pub async fn request(&mut self, req: Request) -> Result<Reply, String> {
        self.next_id += 1;
        let id = self.next_id;
        self.conn
            .send(ClientMsg::Request { id, req })
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match self.conn.next().await {
                Some(Ok(ServerMsg::Reply { id: got, reply })) if got == id => return Ok(reply),
                Some(Ok(_)) => {}
                other => return Err(format!("connection ended: {other:?}")),
            }
        }
    }

    /// Sends a broadcast; returns its id once the server stored it.
    pub async fn broadcast(&mut self, text: &str) -> Result<u64, String> {
        match self
            .request(Request::Broadcast { text: text.into() })
            .await?
        {
            Reply::BroadcastStored { id, .. } => Ok(id),
            other => Err(format!("broadcast refused: {other:?}")),
        }
    }

    /// Who is online, per the server.
    pub async fn list(&mut self) -> Result<Vec<String>, String> {
        match self.request(Request::List).await? {
            Reply::Users { users } => Ok(users.into_iter().map(|u| u.user).collect()),
            other => Err(format!("list refused: {other:?}")),
        }
    }

    /// Waits for the next broadcast, acknowledges it, returns its id.
    pub async fn next_broadcast(&mut self) -> Result<u64, String> {
        loop {
            match tokio::time::timeout(STEP_DEADLINE, self.conn.next()).await {
                Err(_) => return Err("no broadcast in time".into()),
                Ok(Some(Ok(ServerMsg::Event {
                    event: ServerEvent::Broadcast { id, .. },
                }))) => {
                    self.conn
                        .send(ClientMsg::BroadcastAck { upto: id })
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(id);
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => return Err(format!("connection ended: {other:?}")),
            }
        }
    }
}

/// Registers `n` users (`load0000`, ...) with a deliberately cheap argon2id
/// hash, so a thousand logins measure the server, not the KDF.
pub fn register_users(server: &TestServer, n: usize) -> Vec<String> {
    let phc = cheap_hash();
    let names = user_names(n);
    let users: Vec<(String, String)> = names.iter().map(|n| (n.clone(), phc.clone())).collect();
    server.add_users_hashed(&users);
    names
}

/// As [`register_users`], into the data directory of an in-process server.
pub fn register_users_in(data_dir: &std::path::Path, n: usize) -> Vec<String> {
    let phc = cheap_hash();
    let file = p2p_server::users::UserFile::in_dir(data_dir);
    let names = user_names(n);
    for name in &names {
        file.add_hashed(name, phc.clone()).expect("add user");
    }
    names
}

/// `load0000`, `load0001`, ...
fn user_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("load{i:04}")).collect()
}

/// A cheap argon2id hash of [`PASSWORD`] (the accounts are for load, not
/// for protecting anything).
fn cheap_hash() -> String {
    let cheap = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(8, 1, 1, None).expect("params"),
    );
    cheap
        .hash_password(PASSWORD.as_bytes())
        .expect("hash")
        .to_string()
}

/// What [`broadcast_scale`] observed.
#[derive(Debug)]
pub struct ScaleReport {
    /// Online recipients that got the broadcast live (of `online - 1`).
    pub live_delivered: usize,
    /// Offline users that got it at login (of `users - online`).
    pub caught_up: usize,
    /// Sender sends → last online recipient has it (includes the durable
    /// store before fan-out).
    pub live_fanout: Duration,
    /// First catch-up login started → last catch-up user has it.
    pub catch_up_total: Duration,
    /// The sender's wait for the "stored" answer.
    pub store_latency: Duration,
}

/// One broadcast to `users` registered users of whom `online` (the sender
/// among them) are logged in; then every other user logs in, `parallel` at
/// a time, and must receive it. Every recipient must get exactly the id the
/// sender was given.
pub async fn broadcast_scale(
    server: &TestServer,
    users: usize,
    online: usize,
    parallel: usize,
) -> Result<ScaleReport, String> {
    let names = register_users(server, users);
    let (addr, fp) = (server.addr, server.fingerprint.clone());
    let mut live = Vec::new();
    for name in &names[1..online] {
        live.push(Client::login(addr, &fp, name).await?);
    }
    let mut sender = Client::login(addr, &fp, &names[0]).await?;
    let waiting: Vec<_> = live
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move { c.next_broadcast().await.map(|id| (id, Instant::now())) })
        })
        .collect();
    let t0 = Instant::now();
    let id = sender.broadcast("load test broadcast").await?;
    let stored = Instant::now();
    let mut live_delivered = 0;
    let mut last = t0;
    for w in waiting {
        let (got, at) = w.await.map_err(|e| e.to_string())??;
        if got != id {
            return Err(format!("live recipient got broadcast {got}, expected {id}"));
        }
        live_delivered += 1;
        last = last.max(at);
    }
    let live_fanout = last.saturating_duration_since(t0);

    let start = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
    let tasks: Vec<_> = names[online..]
        .iter()
        .cloned()
        .map(|name| {
            let (fp, sem) = (fp.clone(), sem.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.map_err(|e| e.to_string())?;
                let mut c = Client::login(addr, &fp, &name).await?;
                c.next_broadcast().await
            })
        })
        .collect();
    let mut caught_up = 0;
    for t in tasks {
        let got = t.await.map_err(|e| e.to_string())??;
        if got != id {
            return Err(format!("late recipient got broadcast {got}, expected {id}"));
        }
        caught_up += 1;
    }
    Ok(ScaleReport {
        live_delivered,
        caught_up,
        live_fanout,
        catch_up_total: start.elapsed(),
        store_latency: stored - t0,
    })
}
