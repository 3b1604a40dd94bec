//! [`TestServer`]: a real `p2p-server` in a short temp dir, on an
//! ephemeral loopback port.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use crate::{bin, kill, short_tempdir, TestPostgres, DEADLINE};

/// Environment variable choosing what [`TestServer::start`] and
/// [`TestServer::start_in`] serve from: unset or `embedded` (users.csv and
/// state.db in the data dir), or `postgres` (SPEC §9: a database of its own
/// on the test process's shared [`TestPostgres`]).
pub const BACKEND_ENV: &str = "P2P_TEST_BACKEND";

/// The store servers started by this test process serve from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// users.csv and state.db in the data dir.
    Embedded,
    /// `--database`: a fresh database on the shared [`TestPostgres`].
    Postgres,
}

/// The backend [`BACKEND_ENV`] asks for; an unknown value fails the test
/// (a typo must not silently test the embedded store).
pub fn backend() -> Backend {
    match std::env::var(BACKEND_ENV).as_deref() {
        Err(std::env::VarError::NotPresent) | Ok("" | "embedded") => Backend::Embedded,
        Ok("postgres") => Backend::Postgres,
        other => panic!("{BACKEND_ENV}={other:?}: expected embedded or postgres"),
    }
}

/// `extra` with `--database` added when the backend is PostgreSQL and the
/// test did not choose a database itself; the flag's value is reached
/// through `socket` (a server in another network namespace) or TCP.
fn with_backend(extra: &[&str], socket: bool) -> (Vec<String>, bool) {
    let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let own = extra.iter().any(|a| a == "--database");
    if own || backend() == Backend::Embedded {
        return (extra, false);
    }
    let pg = TestPostgres::shared();
    let url = if socket {
        pg.fresh_socket_database()
    } else {
        pg.fresh_database()
    };
    extra.push("--database".into());
    extra.push(url);
    (extra, true)
}

/// A running `p2p-server`.
pub struct TestServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate fingerprint.
    pub fingerprint: String,
    /// Where it serves `/metrics` (an ephemeral loopback port, so parallel
    /// tests never meet on the default 9464); `None` with
    /// `--metrics-listen off` in the extra flags.
    pub metrics: Option<SocketAddr>,
    extra: Vec<String>,
    starts: u32,
    /// Network namespace it runs in (`ip netns exec`), if any.
    netns: Option<String>,
    /// The shared database it serves from (`--database` in `extra`).
    database: Option<String>,
    /// Whether that database came from [`BACKEND_ENV`], not from the test.
    from_backend: bool,
}

impl TestServer {
    /// Starts a server with a fresh data dir and `extra` flags, serving
    /// from the [`backend`] [`BACKEND_ENV`] chooses (unless `extra` has its
    /// own `--database`).
    pub fn start(extra: &[&str]) -> TestServer {
        let (extra, from_backend) = with_backend(extra, false);
        Self::start_full(None, "127.0.0.1:0", extra, from_backend)
    }

    /// Starts a server on the embedded store (users.csv, state.db) whatever
    /// [`BACKEND_ENV`] says: for tests about those files, or that read or
    /// write them directly.
    pub fn start_embedded(extra: &[&str]) -> TestServer {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Self::start_full(None, "127.0.0.1:0", extra, false)
    }

    /// Starts a server inside network namespace `ns` (a [`crate::netlab`]
    /// namespace, e.g. the lab's wan) listening on `listen` (an address of
    /// that namespace, e.g. `203.0.113.1:0`), with `extra` flags, on the
    /// [`backend`] (PostgreSQL through its socket dir).
    pub fn start_in(ns: &str, listen: &str, extra: &[&str]) -> TestServer {
        let (extra, from_backend) = with_backend(extra, true);
        Self::start_full(Some(ns), listen, extra, from_backend)
    }

    fn start_full(
        netns: Option<&str>,
        listen: &str,
        extra: Vec<String>,
        from_backend: bool,
    ) -> TestServer {
        let dir = short_tempdir();
        let netns = netns.map(str::to_string);
        let (child, addr, fingerprint, metrics) =
            Self::spawn(dir.path(), listen, &extra, 0, &netns);
        let database = database_of(&extra);
        TestServer {
            dir,
            child: Some(child),
            addr,
            fingerprint,
            metrics,
            extra,
            starts: 1,
            netns,
            database,
            from_backend,
        }
    }

    fn spawn(
        dir: &Path,
        listen: &str,
        extra: &[String],
        n: u32,
        netns: &Option<String>,
    ) -> (Child, SocketAddr, String, Option<SocketAddr>) {
        let log = std::fs::File::create(dir.join(format!("server-{n}.log"))).expect("log file");
        let mut cmd = match netns {
            // `ip` execs the server in place: the child's pid is the server's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("p2p-server"));
                c
            }
            None => Command::new(bin("p2p-server")),
        };
        let mut child = cmd
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--log-level")
            .arg("debug")
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start p2p-server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut addr, mut fp, mut metrics) = (None, None, None);
        let end = Instant::now() + DEADLINE;
        while addr.is_none() || fp.is_none() {
            let left = end.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let log = std::fs::read_to_string(dir.join(format!("server-{n}.log"))).unwrap_or_default();
                panic!("p2p-server did not report listening (stale binary? run `cargo test --workspace`): {log}")
            });
            if let Some(a) = line.strip_prefix("p2p-server listening on ") {
                addr = Some(a.parse().expect("listen address"));
            } else if let Some(f) = line.strip_prefix("p2p-server fingerprint ") {
                fp = Some(f.to_string());
            } else if let Some(m) = line.strip_prefix("p2p-server metrics on ") {
                metrics = Some(m.parse().expect("metrics address"));
            }
        }
        (child, addr.unwrap(), fp.unwrap(), metrics)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `127.0.0.1:PORT` for `p2pctl login --server`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Adds an account the way `p2p-server user add` does (same code path,
    /// in-process, so a test with many users does not spawn many processes;
    /// with `--database`, through `p2p-server user add --database`).
    pub fn add_user(&self, name: &str, password: &str) {
        if let Some(url) = &self.database {
            let out = self.admin(
                &["user", "add", name, "--password-stdin", "--database", url],
                &format!("{password}\n"),
            );
            assert!(out.status.success(), "user add {name}: {out:?}");
            return;
        }
        p2p_server::users::UserFile::in_dir(&self.data_dir())
            .add(name, password)
            .expect("add user");
    }

    /// Adds accounts with already-computed argon2id hashes (`(name, PHC)`),
    /// as a load test does to skip the KDF: into users.csv, or with
    /// `--database` through `p2p-server user import` of a users.csv written
    /// the same way (one process, one transaction, for any number).
    pub fn add_users_hashed(&self, users: &[(String, String)]) {
        let Some(url) = &self.database else {
            let file = p2p_server::users::UserFile::in_dir(&self.data_dir());
            for (name, phc) in users {
                file.add_hashed(name, phc.clone()).expect("add user");
            }
            return;
        };
        let scratch = short_tempdir();
        let file = p2p_server::users::UserFile::in_dir(scratch.path());
        for (name, phc) in users {
            file.add_hashed(name, phc.clone()).expect("add user");
        }
        let csv = file.path().display().to_string();
        let out = self.admin(&["user", "import", &csv, "--database", url], "");
        assert!(out.status.success(), "user import: {out:?}");
    }

    /// The shared database's URL, if it serves from one.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Whether account `name` exists (`p2p-server user list`, so in
    /// users.csv or, with `--database`, in the database).
    pub fn has_user(&self, name: &str) -> bool {
        let out = self.admin(&["user", "list", "--json"], "");
        assert!(out.status.success(), "user list: {out:?}");
        crate::parse_json(&out)["users"]
            .as_array()
            .expect("user list --json lists users")
            .iter()
            .any(|u| u["user"] == name)
    }

    /// Runs `p2p-server` with `args` against this data dir, `stdin` piped
    /// in; a `user` command also gets this server's `--database` (unless
    /// `args` names one), so it acts on the accounts the server serves.
    pub fn admin(&self, args: &[&str], stdin: &str) -> Output {
        match &self.database {
            Some(url) if args.first() == Some(&"user") && !args.contains(&"--database") => {
                let mut args = args.to_vec();
                args.extend(["--database", url]);
                admin_in(&self.data_dir(), &args, stdin)
            }
            _ => admin_in(&self.data_dir(), args, stdin),
        }
    }

    /// Everything the server (all its runs) logged so far.
    pub fn log(&self) -> String {
        (0..self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("server-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Process id of the running server (for `/proc` measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Starts again on the same port with the same data dir.
    pub fn restart(&mut self) {
        self.stop();
        let (child, addr, fp, metrics) = Self::spawn(
            self.dir.path(),
            &self.addr.to_string(),
            &self.extra,
            self.starts,
            &self.netns,
        );
        self.starts += 1;
        assert_eq!(addr, self.addr);
        self.child = Some(child);
        self.fingerprint = fp;
        self.metrics = metrics;
    }

    /// `n` instances serving from one fresh database of `pg`, each with
    /// `extra` flags (SPEC §9).
    pub fn cluster(pg: &crate::TestPostgres, n: usize, extra: &[&str]) -> Vec<TestServer> {
        let url = pg.fresh_database();
        let mut flags = vec!["--database", url.as_str()];
        flags.extend_from_slice(extra);
        (0..n).map(|_| TestServer::start(&flags)).collect()
    }

    /// Starts a second server on this one's data dir (same accounts,
    /// resume tokens and certificate files) and database, if it has one
    /// (unless `extra` names another), on its own port and admin socket:
    /// two instances behind one identity, for the daemon's server-list
    /// failover (SPEC §9).
    pub fn start_sibling(&self, extra: &[&str]) -> TestServer {
        let dir = short_tempdir();
        std::os::unix::fs::symlink(self.data_dir(), dir.path().join("data"))
            .expect("link the shared data dir");
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let own = extra.iter().any(|a| a == "--database");
        if let (Some(url), false) = (&self.database, own) {
            extra.extend(["--database".into(), url.clone()]);
        }
        let from_backend = self.from_backend && !own;
        extra.push("--admin-socket".into());
        extra.push(dir.path().join("admin.sock").display().to_string());
        let (child, addr, fingerprint, metrics) =
            Self::spawn(dir.path(), "127.0.0.1:0", &extra, 0, &self.netns);
        TestServer {
            dir,
            child: Some(child),
            addr,
            fingerprint,
            metrics,
            database: database_of(&extra),
            extra,
            starts: 1,
            netns: self.netns.clone(),
            from_backend,
        }
    }

    /// Replaces the server with one that has a *different* data dir (so a
    /// different certificate) on the same port. On the PostgreSQL
    /// [`backend`] it also gets a fresh database: the cluster's identity is
    /// stored in the database, and an impostor does not have it.
    pub fn replace_with_impostor(&mut self) -> TestServer {
        self.stop();
        let dir = short_tempdir();
        let mut extra = self.extra.clone();
        if self.from_backend {
            let at = extra
                .iter()
                .position(|a| a == "--database")
                .expect("--database")
                + 1;
            extra[at] = match &self.netns {
                Some(_) => TestPostgres::shared().fresh_socket_database(),
                None => TestPostgres::shared().fresh_database(),
            };
        }
        let (child, addr, fingerprint, metrics) =
            Self::spawn(dir.path(), &self.addr.to_string(), &extra, 0, &self.netns);
        TestServer {
            dir,
            child: Some(child),
            addr,
            fingerprint,
            metrics,
            database: database_of(&extra),
            extra,
            starts: 1,
            netns: self.netns.clone(),
            from_backend: self.from_backend,
        }
    }
}

/// The value of `--database` in `extra`, if any.
fn database_of(extra: &[String]) -> Option<String> {
    extra
        .iter()
        .position(|a| a == "--database")
        .and_then(|i| extra.get(i + 1).cloned())
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `p2p-server` with `args` against the data dir `dir` (no server need
/// be running there), `stdin` piped in.
pub fn admin_in(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(bin("p2p-server"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run p2p-server");
    // The program may exit before reading stdin (a refused argument).
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}
