//! The `p2p-server` a benchmark runs against: started by the tool itself
//! (pinned with `taskset`, log level warn, every limit from arguments) and
//! always killed when the tool ends, fails or unwinds from a panic
//! ([`ServerProc`]'s `Drop`). Plus the `/proc` readings the benchmarks
//! report and the process set-up they need (fd limit, CPU affinity).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};

use crate::PASSWORD;

/// How long the server may take to report its address before the tool
/// gives up (a release server starts in milliseconds; a debug one on a
/// loaded 2-core machine in a few seconds).
pub const START_DEADLINE: Duration = Duration::from_secs(60);

/// File descriptors the server needs besides its sessions (listener, state
/// database and its WAL, log, epoll, metrics...): the margin when checking
/// whether the fd limit fits N sessions.
pub const FD_MARGIN: u64 = 64;

/// What the server is started with.
#[derive(Debug, Clone)]
pub struct ServerOpts {
    /// The `p2p-server` binary; `None`: the one next to this executable.
    pub bin: Option<PathBuf>,
    /// `--max-clients`.
    pub max_clients: usize,
    /// `--broadcast-limit` (per user per hour): a benchmark sends many.
    pub broadcast_limit: u32,
    /// `taskset -c` CPU list for the server, if any.
    pub cpus: Option<String>,
    /// More server flags, verbatim.
    pub extra: Vec<String>,
    /// `--database URL`: serve from this PostgreSQL database (SPEC §9).
    pub database: Option<String>,
}

impl ServerOpts {
    /// Room for `sessions` clients plus a sender, at most `broadcasts`
    /// broadcasts from one user.
    pub fn for_sessions(sessions: usize, broadcasts: u32) -> ServerOpts {
        ServerOpts {
            bin: None,
            max_clients: (sessions + 16).max(50),
            broadcast_limit: broadcasts.max(1),
            cpus: None,
            extra: Vec::new(),
            database: None,
        }
    }
}

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// spawn failed (binary missing, taskset missing...).
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// What was run.
        program: String,
        /// Why not.
        source: std::io::Error,
    },
    /// The server exited or stayed silent instead of reporting its address.
    #[error("p2p-server did not report listening: {log}")]
    NoAddress {
        /// Its stderr so far.
        log: String,
    },
    /// Writing the data directory or the account file failed.
    #[error("data directory: {0}")]
    Data(std::io::Error),
    /// The instances cannot serve as one cluster (several without a
    /// database, or different TLS identities).
    #[error("{0}")]
    Cluster(String),
    /// `p2p-server user import` into the database failed.
    #[error("user import: {0}")]
    Import(String),
}

/// A running server; killed (SIGKILL) and reaped on drop.
pub struct ServerProc {
    child: Child,
    dir: tempfile::TempDir,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate fingerprint.
    pub fingerprint: String,
}

impl ServerProc {
    /// Starts the server in a fresh temporary data directory on an
    /// ephemeral loopback port.
    pub fn start(opts: &ServerOpts) -> Result<ServerProc, StartError> {
        let dir = p2p_testkit::short_tempdir();
        let bin = opts
            .bin
            .clone()
            .unwrap_or_else(|| p2p_testkit::bin("p2p-server"));
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).map_err(StartError::Data)?;
        let mut cmd = match &opts.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let max_clients = opts.max_clients.to_string();
        let limit = opts.broadcast_limit.to_string();
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--log-level", "warn", "--metrics-listen", "off"])
            .args(["--max-clients", &max_clients, "--broadcast-limit", &limit])
            .args(p2p_testkit::ONE_ADDRESS_CROWD)
            .args(opts.database.iter().flat_map(|url| ["--database", url]))
            .args(&opts.extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd.spawn().map_err(|source| StartError::Spawn {
            program: bin.display().to_string(),
            source,
        })?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // From here on the guard owns the child: every early return kills it.
        let mut proc = ServerProc {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            fingerprint: String::new(),
        };
        let no_address = || StartError::NoAddress {
            log: std::fs::read_to_string(&log_path).unwrap_or_default(),
        };
        let (mut addr, mut fp) = (None, None);
        while addr.is_none() || fp.is_none() {
            let line = rx.recv_timeout(START_DEADLINE).map_err(|_| no_address())?;
            if let Some(a) = line.strip_prefix("p2p-server listening on ") {
                addr = Some(a.parse().map_err(|_| no_address())?);
            } else if let Some(f) = line.strip_prefix("p2p-server fingerprint ") {
                fp = Some(f.to_string());
            }
        }
        proc.addr = addr.expect("set above");
        proc.fingerprint = fp.expect("set above");
        Ok(proc)
    }

    /// The server's process id (taskset execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes `n` accounts (`load0000`, ...) in one atomic replace of
    /// `users.csv` (adding them one by one rewrites the file each time:
    /// quadratic at 10,000), with a deliberately cheap argon2id hash so
    /// that logins measure the server, not the KDF. Returns the names.
    pub fn register(&self, n: usize) -> Result<Vec<String>, StartError> {
        write_users(&self.data_dir(), n).map_err(StartError::Data)
    }

    /// Stats of the server now.
    pub fn stats(&self) -> std::io::Result<crate::spray::ProcStats> {
        crate::spray::proc_stats(self.pid())
    }

    /// CPU time the server used so far: the larger of the sum of its
    /// threads' `/proc/PID/task/*/schedstat` (nanoseconds, as the anchor
    /// tool reads mosquitto's) and `/proc/PID/stat` utime + stime (10 ms
    /// ticks, but it keeps the time of threads that already exited).
    pub fn cpu(&self) -> std::io::Result<Duration> {
        let stat = self.stats()?.cpu;
        let mut ns = 0u64;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid()))?.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Ok(stat.max(Duration::from_nanos(ns)))
    }

    /// Open file descriptors of the server (its sessions, listener, files).
    pub fn fds(&self) -> std::io::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid()))?.count())
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` accounts (`load0000`, ...) with a deliberately cheap argon2id hash,
/// as the text of a `users.csv`; returns the names and the text.
pub(crate) fn users_csv(n: usize) -> std::io::Result<(Vec<String>, String)> {
    let cheap = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(8, 1, 1, None).expect("constant argon2 params are valid"),
    );
    let phc = cheap
        .hash_password(PASSWORD.as_bytes())
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .to_string();
    let now = p2p_proto::time::rfc3339(p2p_proto::time::now_ms());
    let names: Vec<String> = (0..n).map(|i| format!("load{i:04}")).collect();
    let mut text = String::from("username,hash,created_at\n");
    for name in &names {
        // The PHC string holds commas: quote it as the csv crate would.
        text.push_str(&format!("{name},\"{phc}\",{now}\n"));
    }
    Ok((names, text))
}

fn write_users(data_dir: &Path, n: usize) -> std::io::Result<Vec<String>> {
    let (names, text) = users_csv(n)?;
    let tmp = data_dir.join("users.csv.load-tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, data_dir.join(p2p_server::users::USERS_FILE))?;
    Ok(names)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the server inherits
/// it); returns (soft now, hard).
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    Ok((hard, hard))
}

/// Pins this process (and every thread it starts afterwards) to `list`, a
/// `taskset -c` style CPU list: `1`, `0,2`, `0-3`.
pub fn pin_self(list: &str) -> Result<(), String> {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    for cpu in parse_cpu_list(list)? {
        set.set(cpu).map_err(|e| format!("CPU {cpu}: {e}"))?;
    }
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(|e| e.to_string())
}

/// The CPUs of a `taskset -c` style list.
fn parse_cpu_list(list: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("bad CPU list {list:?}");
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if a > b {
            return Err(bad());
        }
        cpus.extend(a..=b);
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_taskset() {
        assert_eq!(parse_cpu_list("1"), Ok(vec![1]));
        assert_eq!(parse_cpu_list("0,2-4"), Ok(vec![0, 2, 3, 4]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }

    /// The issue: the tool's server cap was a constant 4096.
    #[test]
    fn max_clients_follows_the_sessions() {
        assert!(ServerOpts::for_sessions(19_000, 1).max_clients >= 19_001);
        assert!(ServerOpts::for_sessions(10, 1).max_clients >= 50);
    }
}
