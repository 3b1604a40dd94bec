//! Password spray and registration flood against a real `p2p-server`, from
//! many loopback source addresses (a client socket can be bound to any of
//! 127.0.0.0/8), for the throttling tests and the spray benchmark
//! (`p2p-spray`, figures in `docs/BENCHMARKS.md`).
//!
//! Everything stays on loopback; counts and time are bounded by the caller.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p_proto::limits::WIRE_VERSION;
use p2p_proto::wire::{Auth, ClientMsg, LoginError, PeerInfo, ServerMsg};
use p2p_proto::Secret;
use p2pd::tlsclient::ClientTls;

/// A TLS connection speaking the client side of the wire protocol.
pub type Conn = p2pd::handshake::ServerConn;

/// Linux reports `/proc/PID/stat` CPU times in USER_HZ, which is 100 on every
/// mainstream kernel build.
const USER_HZ: u64 = 100;

/// How one login attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `LoginOk`.
    LoggedIn,
    /// `LoginFailed` with this code and `retry_after_ms`.
    Refused(LoginError, Option<u64>),
    /// The server answered the busy preamble, or the connection broke.
    NoSession(String),
}

impl Outcome {
    /// A short name for counting.
    pub fn label(&self) -> String {
        match self {
            Outcome::LoggedIn => "LoggedIn".into(),
            Outcome::Refused(code, _) => format!("{code:?}"),
            Outcome::NoSession(_) => "NoSession".into(),
        }
    }
}

/// Connects to `server` from `source` (any local address; `None` lets the
/// kernel pick) through the daemon's own handshake: preamble, TLS pinned to
/// `fingerprint`.
pub async fn connect_from(
    server: SocketAddr,
    fingerprint: &str,
    source: Option<IpAddr>,
) -> Result<Conn, String> {
    let pin = p2pd::tlsclient::PinVerifier::new(Some(fingerprint.to_string()));
    connect_pinned(server, pin, source).await
}

/// As [`connect_from`], with the TLS configuration (and session tickets)
/// of one simulated user: its reconnects resume, as a daemon's do.
pub async fn connect_with(
    server: SocketAddr,
    tls: &Arc<ClientTls>,
    source: Option<IpAddr>,
) -> Result<Conn, String> {
    let pin = p2pd::tlsclient::PinVerifier::with_client(tls.clone());
    connect_pinned(server, pin, source).await
}

async fn connect_pinned(
    server: SocketAddr,
    pin: Arc<p2pd::tlsclient::PinVerifier>,
    source: Option<IpAddr>,
) -> Result<Conn, String> {
    let source = source.map(|ip| SocketAddr::new(ip, 0));
    p2pd::handshake::connect(&server.to_string(), source, pin)
        .await
        .map_err(|e| e.to_string())
}

/// Sends the login message on `conn` and returns the server's answer.
pub async fn send_login(conn: &mut Conn, user: &str, auth: Auth) -> Result<ServerMsg, String> {
    let peer = PeerInfo {
        port: 9,
        advertise: None,
        public_key: "00".repeat(32),
        lan: Vec::new(),
    };
    let login = ClientMsg::Login {
        version: WIRE_VERSION,
        user: user.into(),
        auth,
        peer,
    };
    p2pd::handshake::login(conn, login)
        .await
        .map_err(|e| e.to_string())
}

/// One login (or registration) attempt from `source`; the connection is
/// closed afterwards.
pub async fn attempt(
    server: SocketAddr,
    fingerprint: &str,
    source: IpAddr,
    user: &str,
    auth: Auth,
) -> Outcome {
    let mut conn = match connect_from(server, fingerprint, Some(source)).await {
        Ok(c) => c,
        Err(e) => return Outcome::NoSession(e),
    };
    match send_login(&mut conn, user, auth).await {
        Ok(ServerMsg::LoginOk { .. }) => Outcome::LoggedIn,
        Ok(ServerMsg::LoginFailed {
            code,
            retry_after_ms,
            ..
        }) => Outcome::Refused(code, retry_after_ms),
        Ok(other) => Outcome::NoSession(format!("unexpected answer: {other:?}")),
        Err(e) => Outcome::NoSession(e),
    }
}

/// `Auth::Password` with `password`.
pub fn password(password: &str) -> Auth {
    Auth::Password {
        password: Secret::new(password),
    }
}

/// How many loopback addresses a spray comes from: 127.0.0.2 ..=
/// 127.0.0.250 (127.0.0.1 is left to the legitimate clients of a test).
pub const SPRAY_SOURCES: u8 = 249;

/// The `i`-th spray source, round robin over [`SPRAY_SOURCES`] addresses.
pub fn spray_source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        2 + (i % usize::from(SPRAY_SOURCES)) as u8,
    ))
}

/// Memory and CPU of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// Resident set now (VmRSS), KiB.
    pub rss_kib: u64,
    /// Peak resident set (VmHWM), KiB.
    pub hwm_kib: u64,
    /// User + system CPU time so far.
    pub cpu: Duration,
}

/// Reads [`ProcStats`] of `pid`.
pub fn proc_stats(pid: u32) -> std::io::Result<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line, so the 12th and 13th here.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Ok(ProcStats {
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        cpu: Duration::from_millis(ticks * 1000 / USER_HZ),
    })
}

/// What a spray did.
#[derive(Debug, Default)]
pub struct SprayReport {
    /// Attempts made.
    pub attempts: usize,
    /// Outcome label → count.
    pub outcomes: BTreeMap<String, usize>,
    /// Wall time of the spray.
    pub elapsed: Duration,
    /// Server stats before and after, if a pid was given.
    pub before: ProcStats,
    /// See `before`.
    pub after: ProcStats,
}

/// `attempts` wrong-password logins, `parallel` at a time, cycling through
/// `users` and the spray sources; stops early at `deadline`.
pub async fn spray(
    server: SocketAddr,
    fingerprint: &str,
    server_pid: Option<u32>,
    users: &[String],
    attempts: usize,
    parallel: usize,
    deadline: Duration,
) -> SprayReport {
    let stats = || {
        server_pid
            .and_then(|p| proc_stats(p).ok())
            .unwrap_or_default()
    };
    let before = stats();
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::with_capacity(attempts);
    for i in 0..attempts {
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        if start.elapsed() >= deadline {
            break;
        }
        let (fp, user) = (fingerprint.to_string(), users[i % users.len()].clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let guess = password(&format!("guess-{i}-password"));
            attempt(server, &fp, spray_source(i), &user, guess).await
        }));
    }
    let mut report = SprayReport {
        attempts: tasks.len(),
        before,
        ..SprayReport::default()
    };
    for t in tasks {
        let label = t
            .await
            .map_or_else(|e| format!("panic: {e}"), |o| o.label());
        *report.outcomes.entry(label).or_default() += 1;
    }
    report.elapsed = start.elapsed();
    report.after = stats();
    report
}
