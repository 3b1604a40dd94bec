//! Test harness: starts the real `p2p-server` and `p2pd` binaries on
//! ephemeral loopback ports in short temp dirs, drives the real `p2pctl`,
//! and waits for readiness by polling with a deadline (never by sleeping a
//! fixed time). Every child process is killed when its handle drops, so a
//! failing test leaves nothing behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod lines;
pub mod netlab;
mod postgres;
pub mod rng;
mod server;
pub use lines::{read_to_end_within, Lines};
pub use postgres::TestPostgres;
pub use server::{admin_in, backend, Backend, TestServer, BACKEND_ENV};

/// Default deadline for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Pause between polls of a condition (a poll interval, not a synchronisation).
pub const POLL: Duration = Duration::from_millis(25);
/// `p2p-server` flags for tests and load runs where every client comes from
/// 127.0.0.1: lift the per-source caps on connections not yet logged in,
/// which are sized for real addresses, not for a whole crowd on one.
pub const ONE_ADDRESS_CROWD: &[&str] = &[
    "--max-unauthenticated-per-address",
    "100000",
    "--max-unauthenticated-per-network",
    "100000",
];

/// Path of a workspace binary, next to the test executable's `deps` dir.
/// Built by `cargo test --workspace` (every binary's package has tests).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // Tests run from target/<profile>/deps; tools like p2p-load from
    // target/<profile> itself.
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .collect();
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{name} not built next to {}; run the tests with `cargo test --workspace`",
                exe.display()
            )
        })
}

/// Polls `check` until it returns `Some`, or panics after `deadline` saying
/// what was awaited.
pub fn wait_for<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// A short temp dir under /tmp (Unix socket paths must stay under 108 bytes).
pub fn short_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("p2p")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

pub(crate) fn kill(child: &mut Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, signal);
    let _ = child.wait();
}

/// A running `p2pd` with its own HOME and XDG dirs.
pub struct TestDaemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
    env: Vec<(String, String)>,
    /// Network namespace it runs in (`ip netns exec`), if any.
    netns: Option<String>,
}

/// Config for tests: quick reconnects so "gets back by itself" happens in
/// seconds, not a minute (the policy itself is unit-tested).
pub const FAST_RECONNECT: &str = "reconnect_min = \"100ms\"\nreconnect_max = \"1s\"\n";

impl TestDaemon {
    /// Starts a daemon with `config` as its p2pd.toml.
    pub fn start(config: &str) -> TestDaemon {
        Self::start_with_env(config, &[])
    }

    /// A new account `user` on `server` (password `{user}-password`, the
    /// tests' convention) and a daemon logged in as it.
    pub fn online(server: &TestServer, user: &str) -> TestDaemon {
        let password = format!("{user}-password");
        server.add_user(user, &password);
        let d = Self::start(FAST_RECONNECT);
        let (code, doc) = d.login(server, user, &password);
        assert_eq!(code, 0, "{user} could not log in: {doc}");
        d
    }

    /// Starts a daemon inside network namespace `ns` (a [`netlab`] host),
    /// its peer listener on all of that namespace's addresses
    /// (`--peer-listen 0.0.0.0:0`, which overrides `config`). `p2pctl`
    /// still runs outside: the control socket is on the shared filesystem.
    pub fn start_in(ns: &str, config: &str) -> TestDaemon {
        Self::start_full(config, &[], Some(ns))
    }

    /// [`TestDaemon::online`] for a daemon inside namespace `ns` (which
    /// must reach `server`'s address).
    pub fn online_in(ns: &str, server: &TestServer, user: &str) -> TestDaemon {
        let password = format!("{user}-password");
        server.add_user(user, &password);
        let d = Self::start_in(ns, FAST_RECONNECT);
        let (code, doc) = d.login(server, user, &password);
        assert_eq!(code, 0, "{user} could not log in: {doc}");
        d
    }

    /// Starts a daemon with extra environment variables (failpoints).
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> TestDaemon {
        Self::start_full(config, env, None)
    }

    fn start_full(config: &str, env: &[(&str, &str)], netns: Option<&str>) -> TestDaemon {
        let dir = short_tempdir();
        let cfg_dir = dir.path().join("c/p2p");
        std::fs::create_dir_all(&cfg_dir).unwrap();
        std::fs::write(cfg_dir.join("p2pd.toml"), config).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut d = TestDaemon {
            dir,
            child: None,
            starts: 0,
            env,
            netns: netns.map(str::to_string),
        };
        d.spawn();
        d
    }

    /// Drops the extra environment for the next (re)start.
    pub fn clear_env(&mut self) {
        self.env.clear();
    }

    /// Sends SIGTERM without waiting (see [`TestDaemon::wait_exit`]).
    pub fn terminate(&self) {
        let child = self.child.as_ref().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    }

    /// Waits for the daemon to exit by itself (a failpoint crash).
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = wait_for(deadline, "p2pd to exit", || child.try_wait().ok().flatten());
        self.child = None;
        status
    }

    fn envs(&self, cmd: &mut Command) {
        let p = self.dir.path();
        cmd.env("HOME", p)
            .env("XDG_CONFIG_HOME", p.join("c"))
            .env("XDG_STATE_HOME", p.join("s"))
            .env("XDG_RUNTIME_DIR", p.join("r"))
            .env_remove("P2PD_SOCKET")
            .env_remove("RUST_LOG")
            // No desktop notifications from tests unless a test gives a bus.
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }

    fn spawn(&mut self) {
        let runtime = self.dir.path().join("r");
        p2p_sys::fsutil::ensure_private_dir(&runtime).unwrap();
        let log = std::fs::File::create(self.dir.path().join(format!("p2pd-{}.log", self.starts)))
            .unwrap();
        let (mut cmd, peer_listen) = match &self.netns {
            // `ip` execs p2pd in place: the child's pid is p2pd's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("p2pd"));
                (c, "0.0.0.0:0")
            }
            None => (Command::new(bin("p2pd")), "127.0.0.1:0"),
        };
        self.envs(&mut cmd);
        // A test that puts `peer_listen` in the config (an address only
        // some can reach) keeps it; the others get the default above.
        let config = std::fs::read_to_string(self.dir.path().join("c/p2p/p2pd.toml"));
        let own =
            config.is_ok_and(|c| c.lines().any(|l| l.trim_start().starts_with("peer_listen")));
        if !own {
            cmd.args(["--peer-listen", peer_listen]);
        }
        cmd.args(["--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start p2pd"));
        self.starts += 1;
        let socket = self.socket();
        wait_for(DEADLINE, "p2pd control socket", || {
            let mut s = UnixStream::connect(&socket).ok()?;
            let mut line = String::new();
            s.set_read_timeout(Some(DEADLINE)).ok()?;
            BufReader::new(&mut s).read_line(&mut line).ok()?;
            line.contains("\"hello\"").then_some(())
        });
    }

    /// The control socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("r/p2p/p2pd.sock")
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("s/p2p")
    }

    /// Everything this daemon logged so far.
    pub fn log(&self) -> String {
        (0..self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("p2pd-{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Runs `p2pctl ARGS` against this daemon with `stdin`; a p2pctl still
    /// running after [`DEADLINE`] is killed and the test fails with its
    /// command line.
    pub fn ctl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::new(bin("p2pctl"));
        self.envs(&mut cmd);
        cmd.args(args);
        lines::output_within(&mut cmd, stdin.as_bytes(), DEADLINE)
    }

    /// Runs `p2pctl ARGS` (within [`DEADLINE`], as [`TestDaemon::ctl_stdin`]).
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_stdin(args, "")
    }

    /// The user names `p2pctl --json list` shows, which must succeed.
    pub fn users(&self) -> Vec<String> {
        let (code, doc) = self.ctl_json(&["list"]);
        assert_eq!(code, 0, "list: {doc}");
        doc["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| u["user"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// `p2pctl --json broadcast TEXT`, which must succeed; its `broadcast`
    /// object (id, expiry).
    pub fn broadcast(&self, text: &str) -> Value {
        let (code, doc) = self.ctl_json(&["broadcast", text]);
        assert_eq!(code, 0, "broadcast: {doc}");
        doc["broadcast"].clone()
    }

    /// The broadcast texts in the inbox (all, read or not), oldest first,
    /// once there are at least `n` (within [`DEADLINE`]).
    pub fn broadcasts(&self, n: usize) -> Vec<String> {
        wait_for(DEADLINE, &format!("{n} broadcasts"), || {
            let (_, doc) = self.ctl_json(&["inbox", "--all"]);
            let texts: Vec<String> = doc["messages"]
                .as_array()?
                .iter()
                .filter(|m| m["kind"] == "broadcast")
                .map(|m| m["text"].as_str().unwrap_or_default().to_string())
                .collect();
            (texts.len() >= n).then_some(texts)
        })
    }

    /// The texts `p2pctl --json inbox EXTRA...` lists (unread only unless
    /// `extra` says `--all`), oldest first.
    pub fn inbox_texts(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["inbox"];
        args.extend_from_slice(extra);
        let (code, doc) = self.ctl_json(&args);
        assert_eq!(code, 0, "inbox: {doc}");
        doc["messages"]
            .as_array()
            .expect("inbox lists messages")
            .iter()
            .map(|m| m["text"].as_str().expect("text").to_string())
            .collect()
    }

    /// Runs `p2pctl --json ARGS` (within [`DEADLINE`], as
    /// [`TestDaemon::ctl_stdin`]) and returns the exit code and the document.
    pub fn ctl_json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all);
        (out.status.code().unwrap_or(-1), parse_json(&out))
    }

    /// `p2pctl --json login` with the password on stdin.
    pub fn login(&self, server: &TestServer, user: &str, password: &str) -> (i32, Value) {
        self.authenticate("login", &server.address(), user, password, &[])
    }

    /// `p2pctl --json VERB --server ADDR --user USER --password-stdin EXTRA`
    /// for `login` or `register`, with the password on stdin.
    pub fn authenticate(
        &self,
        verb: &str,
        server: &str,
        user: &str,
        password: &str,
        extra: &[&str],
    ) -> (i32, Value) {
        let mut args = vec![
            "--json",
            verb,
            "--server",
            server,
            "--user",
            user,
            "--password-stdin",
        ];
        // No terminal to confirm a first-use pin on: tests that do not pin
        // explicitly trust what their own test server presents.
        if !extra.contains(&"--fingerprint") {
            args.push("--trust-on-first-use");
        }
        args.extend_from_slice(extra);
        let out = self.ctl_stdin(&args, &format!("{password}\n"));
        (out.status.code().unwrap_or(-1), parse_json(&out))
    }

    /// The `status` document, straight over the control socket.
    pub fn status(&self) -> Value {
        self.request(r#"{"id":1,"cmd":"status"}"#)["result"].clone()
    }

    /// Sends one raw control line and returns the response with that line's
    /// id (or the first response when the line has none).
    pub fn request(&self, line: &str) -> Value {
        let mut s = UnixStream::connect(self.socket()).expect("connect control socket");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        let mut r = BufReader::new(s);
        let mut hello = String::new();
        r.read_line(&mut hello).unwrap();
        let mut resp = String::new();
        r.read_line(&mut resp).unwrap();
        serde_json::from_str(&resp).unwrap_or_else(|e| panic!("bad response {resp:?}: {e}"))
    }

    /// The server-session state (`online`, `connecting`, ...).
    pub fn state(&self) -> String {
        self.status()["server"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until the server session is in `state`.
    pub fn wait_state(&self, state: &str, deadline: Duration) -> Value {
        wait_for(deadline, &format!("p2pd state {state}"), || {
            let s = self.status();
            (s["server"]["state"] == state).then_some(s)
        })
    }

    /// Process id of the running daemon (p2pd itself, also under
    /// `ip netns exec`, which execs it in place).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// SIGTERM; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        c.wait().ok()
    }

    /// Starts again with the same HOME (state, config, socket path).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Parses a command's stdout as one JSON document.
pub fn parse_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {text:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Reads until EOF or error with a deadline; returns what was read and
/// whether the peer closed (EOF or reset) within it.
pub fn read_until_closed(stream: &mut impl Read, deadline: Duration) -> (Vec<u8>, bool) {
    let end = Instant::now() + deadline;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}
