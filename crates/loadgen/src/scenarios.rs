//! The three benchmark scenarios of `p2p-load` (issue 12), matching what
//! the mosquitto anchor tool (`../shared/bench/mqtt-anchor`) measures:
//! fan-out to N online sessions, catch-up of N sessions resuming with their
//! tokens, and N sessions held. Every delivery is checked (the right id,
//! exactly once), so the same code is the small tests in `tests/bench.rs`.
//!
//! Each runs against [`Servers`]: one server, or several instances on one
//! PostgreSQL database with the sessions spread round-robin and the sender
//! on the first (SPEC §9); then the database's statements and CPU are
//! measured too ([`DbFigures`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::dbstats::{cpu_between, DbStats, Statements};
use crate::servers::Servers;
use crate::{Client, STEP_DEADLINE};

/// Connection handshakes (TCP + TLS + login) in flight at once, as the
/// mosquitto tool does (and as a listen backlog of 100 tolerates).
pub const HANDSHAKES_IN_FLIGHT: usize = 100;

/// Pause after the last login before reading the server's RSS, so frees and
/// buffer shrinks that follow a login are counted (the anchor tool waits the
/// same 1 s). A measurement settle time, not a synchronisation.
pub const RSS_SETTLE: Duration = Duration::from_secs(1);

/// Pause after the last fan-out round before reading the server's CPU, so
/// the acknowledgements of that round are counted too, including their
/// write to `state.db` (the server writes acknowledgements at most once a
/// second, so this is that second and the anchor tool's 500 ms for its
/// PUBACKs).
pub const ACK_SETTLE: Duration = Duration::from_millis(1500);

/// With a database: how long the instances are watched with nothing to do,
/// to subtract their background statements (each instance polls the feed
/// and its events every second, and renews leases) from a broadcast's.
pub const IDLE_WINDOW: Duration = Duration::from_secs(3);

/// Queries listed per run in [`DbFigures::top`].
pub const TOP_QUERIES: usize = 12;

/// What the shared database did during a [`fanout`] (with `--database`).
#[derive(Debug, Clone, Default)]
pub struct DbFigures {
    /// Statements (round trips) while the sessions logged in, per login;
    /// `None` without `pg_stat_statements`.
    pub statements_per_login: Option<f64>,
    /// Sessions per instance once all logged in (presence rows), most
    /// first: the round-robin spread.
    pub online_per_instance: Vec<i64>,
    /// Statements per second with nothing happening (all instances).
    pub idle_statements_per_s: Option<f64>,
    /// Statements during the measured rounds (acknowledgements included),
    /// less the idle rate over that time, per broadcast.
    pub statements_per_broadcast: Option<f64>,
    /// The most called statements during the measured rounds.
    pub top: Vec<(String, i64)>,
    /// CPU of the database's processes over the measured rounds, per
    /// delivery, µs.
    pub cpu_us_per_delivery: f64,
}

/// What [`fanout`] measured.
#[derive(Debug, Clone)]
pub struct FanoutReport {
    /// Online receiving sessions (the sender is one more).
    pub online: usize,
    /// Instances they were spread over.
    pub instances: usize,
    /// All receiving sessions' logins (password, [`HANDSHAKES_IN_FLIGHT`]
    /// at a time), first started → last answered, ms.
    pub login_ms: f64,
    /// Per measured round: send → every session has it, ms.
    pub fanout_all_ms: Vec<f64>,
    /// Per measured round: the sender's wait for "stored", ms.
    pub store_ms: Vec<f64>,
    /// Server CPU (user + system) over the measured rounds / deliveries.
    pub server_cpu_us_per_delivery: f64,
    /// (RSS with the sessions logged in − RSS before) / sessions.
    pub server_rss_bytes_per_session: f64,
    /// Deliveries received and checked, the warm-up round included.
    pub deliveries: usize,
    /// Broadcasts sent, the warm-up round included.
    pub broadcasts: usize,
    /// With a database: what it did.
    pub db: Option<DbFigures>,
}

/// What [`catchup`] measured.
#[derive(Debug, Clone)]
pub struct CatchupReport {
    /// Sessions that reconnected with their token and got the broadcast.
    pub caught_up: usize,
    /// Of those, reconnects whose TLS handshake was a resumption (TLS 1.3
    /// PSK: no certificate, no signature).
    pub tls_resumed: usize,
    /// First reconnect started → the last session has the broadcast, ms.
    pub catchup_all_ms: f64,
    /// Server CPU over that phase, ms.
    pub server_cpu_ms: f64,
    /// With a database: its processes' CPU over that phase, ms.
    pub db_cpu_ms: Option<f64>,
    /// With `pg_stat_statements`: statements over that phase per session.
    pub db_statements_per_session: Option<f64>,
}

/// What [`hold`] measured.
#[derive(Debug, Clone)]
pub struct HoldReport {
    /// Sessions logged in and still open (per the server's fd count).
    pub held: usize,
    /// (RSS with the sessions − RSS before) / sessions held.
    pub server_rss_bytes_per_session: f64,
    /// The first login that failed, if any (e.g. out of file descriptors).
    pub first_error: Option<String>,
}

/// The median of `v` (0 when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rss_bytes(servers: &Servers) -> Result<u64, String> {
    servers.rss_bytes().map_err(|e| e.to_string())
}

fn cpu(servers: &Servers) -> Result<Duration, String> {
    servers.cpu().map_err(|e| e.to_string())
}

async fn db_stats(servers: &Servers) -> Result<Option<DbStats>, String> {
    match servers.database() {
        Some(url) => Ok(Some(DbStats::connect(url).await?)),
        None => Ok(None),
    }
}

/// Statements since the last reset, then a reset.
async fn take(db: &DbStats) -> Result<Option<Statements>, String> {
    let s = db.statements().await?;
    db.reset().await?;
    Ok(s)
}

/// Logs `names` in by password, [`HANDSHAKES_IN_FLIGHT`] at a time, name
/// `i` on instance `first + i` (round-robin); one result per name, in order.
async fn login_all(
    servers: &Servers,
    first: usize,
    names: &[String],
) -> Vec<Result<Client, String>> {
    let sem = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    let tasks: Vec<_> = names
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, name)| {
            let server = servers.for_session(first + i);
            let (addr, fp, sem) = (server.addr, server.fingerprint.clone(), sem.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.map_err(|e| e.to_string())?;
                Client::login(addr, &fp, &name).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(names.len());
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| Err(e.to_string())));
    }
    out
}

async fn login_all_ok(
    servers: &Servers,
    first: usize,
    names: &[String],
) -> Result<Vec<Client>, String> {
    login_all(servers, first, names).await.into_iter().collect()
}

/// Waits (polling, up to [`STEP_DEADLINE`]) until the server holds at most
/// `fds` descriptors: the sessions just closed are gone on its side too.
async fn wait_fds_at_most(server: &Servers, fds: usize) -> Result<(), String> {
    let end = Instant::now() + STEP_DEADLINE;
    loop {
        let now = server.fds().map_err(|e| e.to_string())?;
        if now <= fds {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!("server still has {now} fds, expected ≤ {fds}"));
        }
        tokio::time::sleep(p2p_testkit::POLL).await;
    }
}

/// Waits (polling, up to [`STEP_DEADLINE`]) until at most `n` sessions
/// are online in the cluster.
async fn wait_online_at_most(db: &DbStats, n: i64) -> Result<(), String> {
    let end = Instant::now() + STEP_DEADLINE;
    loop {
        let now = db.online().await?;
        if now <= n {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(format!("still {now} sessions online, expected ≤ {n}"));
        }
        tokio::time::sleep(p2p_testkit::POLL).await;
    }
}

/// `online` sessions logged in (spread over the instances, the sender on
/// the first); the sender sends `1 + rounds` broadcasts (the first a
/// warm-up, not counted), waiting each time until every session has it.
/// Each session must get every broadcast exactly once, in order.
pub async fn fanout(
    servers: &Servers,
    online: usize,
    rounds: usize,
) -> Result<FanoutReport, String> {
    let names = servers.register(online + 1).map_err(|e| e.to_string())?;
    let db = db_stats(servers).await?;
    let first = &servers.instances()[0];
    let mut sender = Client::login(first.addr, &first.fingerprint, &names[0]).await?;
    let rss_before = rss_bytes(servers)?;
    if let Some(db) = &db {
        db.reset().await?;
    }
    let t_login = Instant::now();
    // Receiver i on instance i + 1: the sender's instance gets no extra.
    let clients = login_all_ok(servers, 1, &names[1..]).await?;
    let login_ms = ms(t_login.elapsed());
    let mut figures = DbFigures::default();
    if let Some(db) = &db {
        figures.statements_per_login = take(db)
            .await?
            .map(|s| s.total() as f64 / online.max(1) as f64);
        // Written before each login's answer: all there now.
        figures.online_per_instance = db.online_per_instance().await?;
    }
    tokio::time::sleep(RSS_SETTLE).await;
    let rss_with = rss_bytes(servers)?;
    let mut idle_per_s = 0.0;
    if let Some(db) = &db {
        db.reset().await?;
        let t = Instant::now();
        tokio::time::sleep(IDLE_WINDOW).await;
        if let Some(s) = db.statements().await? {
            idle_per_s = s.total() as f64 / t.elapsed().as_secs_f64();
            figures.idle_statements_per_s = Some(idle_per_s);
        }
    }

    let total = rounds + 1;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(idx, mut c)| {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::with_capacity(total);
                for _ in 0..total {
                    let id = c.next_broadcast().await?;
                    got.push(id);
                    let _ = tx.send((idx, id, Instant::now()));
                }
                // The client stays connected until every round is over.
                Ok::<_, String>((got, c))
            })
        })
        .collect();
    drop(tx);

    let (mut fan, mut store, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu_start = Duration::ZERO;
    let (mut db_cpu_start, mut t_measured) = (Default::default(), Instant::now());
    for round in 0..total {
        if round == 1 {
            cpu_start = cpu(servers)?;
            if let Some(db) = &db {
                db_cpu_start = db.cpu().await?;
                db.reset().await?;
            }
            t_measured = Instant::now();
        }
        let t0 = Instant::now();
        let id = sender.broadcast("load test broadcast").await?;
        let stored = t0.elapsed();
        ids.push(id);
        let mut last = t0;
        for _ in 0..online {
            let (idx, got, at) = tokio::time::timeout(STEP_DEADLINE, rx.recv())
                .await
                .map_err(|_| format!("round {round}: not every session got broadcast {id}"))?
                .ok_or_else(|| format!("round {round}: a session ended early"))?;
            if got != id {
                return Err(format!("session {idx} got broadcast {got}, expected {id}"));
            }
            last = last.max(at);
        }
        if round > 0 {
            fan.push(ms(last - t0));
            store.push(ms(stored));
        }
    }
    tokio::time::sleep(ACK_SETTLE).await;
    let cpu_used = cpu(servers)?.saturating_sub(cpu_start);
    let measured = (online * rounds).max(1) as f64;
    if let Some(db) = &db {
        let measured_s = t_measured.elapsed().as_secs_f64();
        if let Some(s) = db.statements().await? {
            let net = s.total() as f64 - idle_per_s * measured_s;
            figures.statements_per_broadcast = Some(net / rounds.max(1) as f64);
            figures.top = s.by_query.into_iter().take(TOP_QUERIES).collect();
        }
        let used = cpu_between(&db_cpu_start, &db.cpu().await?);
        figures.cpu_us_per_delivery = used.as_secs_f64() * 1e6 / measured;
    }
    let mut deliveries = 0;
    let mut keep = Vec::with_capacity(online);
    for t in tasks {
        let (got, c) = t.await.map_err(|e| e.to_string())??;
        if got != ids {
            return Err(format!("a session got {got:?}, expected {ids:?}"));
        }
        deliveries += got.len();
        keep.push(c);
    }
    Ok(FanoutReport {
        online,
        instances: servers.instances().len(),
        login_ms,
        server_cpu_us_per_delivery: cpu_used.as_secs_f64() * 1e6 / measured,
        server_rss_bytes_per_session: rss_with.saturating_sub(rss_before) as f64
            / online.max(1) as f64,
        fanout_all_ms: fan,
        store_ms: store,
        deliveries,
        broadcasts: ids.len(),
        db: db.map(|_| figures),
    })
}

/// `sessions` sessions log in (spread over the instances) and drop; one
/// broadcast is stored while they are away; all reconnect to the same
/// instance with their resume tokens ([`HANDSHAKES_IN_FLIGHT`] at a time)
/// and must each get it.
pub async fn catchup(servers: &Servers, sessions: usize) -> Result<CatchupReport, String> {
    let names = servers.register(sessions + 1).map_err(|e| e.to_string())?;
    let db = db_stats(servers).await?;
    let first = &servers.instances()[0];
    let mut sender = Client::login(first.addr, &first.fingerprint, &names[0]).await?;
    let fds_base = servers.fds().map_err(|e| e.to_string())?;
    let clients = login_all_ok(servers, 1, &names[1..]).await?;
    let tokens: Vec<_> = clients
        .iter()
        .map(|c| (c.token().clone(), c.tls()))
        .collect();
    drop(clients);
    match &db {
        // The instances' pools open connections as the logins come: their
        // descriptors are no measure; the presence rows are.
        Some(db) => wait_online_at_most(db, 1).await?,
        None => wait_fds_at_most(servers, fds_base).await?,
    }
    let id = sender.broadcast("load test broadcast").await?;

    let cpu0 = cpu(servers)?;
    let db_cpu0 = match &db {
        Some(db) => {
            db.reset().await?;
            db.cpu().await?
        }
        None => Default::default(),
    };
    let t0 = Instant::now();
    let sem = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    let tasks: Vec<_> = names[1..]
        .iter()
        .cloned()
        .zip(tokens)
        .enumerate()
        .map(|(i, (name, (token, tls)))| {
            let (sem, addr) = (sem.clone(), servers.for_session(1 + i).addr);
            tokio::spawn(async move {
                let permit = sem.acquire_owned().await.map_err(|e| e.to_string())?;
                let mut c = Client::resume(addr, tls, &name, token).await?;
                drop(permit);
                let got = c.next_broadcast().await?;
                Ok::<_, String>((got, Instant::now(), c))
            })
        })
        .collect();
    let mut last = t0;
    let mut keep = Vec::with_capacity(sessions);
    for t in tasks {
        let (got, at, c) = t.await.map_err(|e| e.to_string())??;
        if got != id {
            return Err(format!("a resumed session got {got}, expected {id}"));
        }
        last = last.max(at);
        keep.push(c);
    }
    let cpu_used = cpu(servers)?.saturating_sub(cpu0);
    let (mut db_cpu_ms, mut db_statements_per_session) = (None, None);
    if let Some(db) = &db {
        db_cpu_ms = Some(ms(cpu_between(&db_cpu0, &db.cpu().await?)));
        db_statements_per_session = db
            .statements()
            .await?
            .map(|s| s.total() as f64 / sessions.max(1) as f64);
    }
    Ok(CatchupReport {
        caught_up: keep.len(),
        tls_resumed: keep.iter().filter(|c| c.tls_resumed()).count(),
        catchup_all_ms: ms(last - t0),
        server_cpu_ms: ms(cpu_used),
        db_cpu_ms,
        db_statements_per_session,
    })
}

/// `sessions` sessions log in (spread over the instances) and stay; how
/// many the servers hold and their RSS per session. Failed logins are
/// counted, not fatal: the point is how far it goes.
pub async fn hold(servers: &Servers, sessions: usize) -> Result<HoldReport, String> {
    let names = servers.register(sessions).map_err(|e| e.to_string())?;
    let rss_before = rss_bytes(servers)?;
    let fds_base = servers.fds().map_err(|e| e.to_string())?;
    let mut first_error = None;
    let mut keep = Vec::with_capacity(sessions);
    for r in login_all(servers, 0, &names).await {
        match r {
            Ok(c) => keep.push(c),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    tokio::time::sleep(RSS_SETTLE).await;
    let rss_with = rss_bytes(servers)?;
    let open = servers
        .fds()
        .map_err(|e| e.to_string())?
        .saturating_sub(fds_base);
    let held = keep.len().min(open);
    Ok(HoldReport {
        held,
        server_rss_bytes_per_session: rss_with.saturating_sub(rss_before) as f64
            / held.max(1) as f64,
        first_error,
    })
}
