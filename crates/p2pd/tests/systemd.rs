//! systemd integration without systemd: the real `p2pd` binary started the
//! way a service manager starts it.
//!
//! - Socket activation: the test makes the listening control socket itself
//!   and hands it over as fd 3 with `LISTEN_FDS=1` and `LISTEN_PID` set to
//!   the child's own pid (through `sh -c 'LISTEN_PID=$$ exec p2pd'`, since
//!   the pid is only known after the fork).
//! - Readiness: a Unix datagram socket plays systemd's `NOTIFY_SOCKET`; the
//!   test reads `READY=1`, `STATUS=` and `STOPPING=1` from it with a
//!   deadline.
//!
//! The real `systemd --user` check is `packaging/systemd/check-user-units.sh`
//! (see docs/systemd.md).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use p2p_testkit::{bin, short_tempdir, wait_for, TestServer, DEADLINE, FAST_RECONNECT};
use serde_json::Value;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FD: RawFd = 3;

/// A `p2pd` started by hand, with its own HOME and XDG dirs, killed on drop.
struct Daemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Daemon {
    /// A home for a daemon: config (fast reconnects) and a 0700 runtime dir.
    fn home() -> tempfile::TempDir {
        let dir = short_tempdir();
        let cfg = dir.path().join("c/p2p");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("p2pd.toml"), FAST_RECONNECT).unwrap();
        p2p_sys::fsutil::ensure_private_dir(&dir.path().join("r")).unwrap();
        dir
    }

    /// `program` with this home's environment, no inherited systemd or
    /// socket variables, and stderr to `p2pd.log`.
    fn command(dir: &Path, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("HOME", dir)
            .env("XDG_CONFIG_HOME", dir.join("c"))
            .env("XDG_STATE_HOME", dir.join("s"))
            .env("XDG_RUNTIME_DIR", dir.join("r"));
        for var in [
            "P2PD_SOCKET",
            "RUST_LOG",
            "NOTIFY_SOCKET",
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
            "JOURNAL_STREAM",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// `sh -c 'LISTEN_PID=$$ exec p2pd ...'` with `listener` as fd 3: the
    /// shell's pid is the daemon's pid after `exec`.
    fn command_activated(dir: &Path, listener: &impl AsRawFd, listen_pid: &str) -> Command {
        let mut cmd = Self::command(dir, Path::new("sh"));
        cmd.arg("-c")
            .arg(format!("LISTEN_PID={listen_pid} exec \"$0\" \"$@\""))
            .arg(bin("p2pd"))
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", "p2pd.socket");
        let fd = listener.as_raw_fd();
        // SAFETY: between fork and exec only async-signal-safe calls (dup2,
        // fcntl) run, on descriptors this process owns.
        unsafe {
            cmd.pre_exec(move || {
                if fd == LISTEN_FD {
                    // dup2 onto itself would keep FD_CLOEXEC set.
                    if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, LISTEN_FD) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    fn spawn(dir: tempfile::TempDir, mut cmd: Command) -> Daemon {
        let log = std::fs::File::create(dir.path().join("p2pd.log")).unwrap();
        cmd.args(["--peer-listen", "127.0.0.1:0", "--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().expect("start p2pd");
        Daemon {
            dir,
            child: Some(child),
        }
    }

    /// Where the daemon binds its control socket when not activated.
    fn own_socket(&self) -> PathBuf {
        self.dir.path().join("r/p2p/p2pd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("p2pd.log")).unwrap_or_default()
    }

    /// SIGTERM, then the exit status within the deadline.
    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.as_ref().expect("running").id();
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.exit_status("p2pd to exit after SIGTERM")
    }

    /// The exit status within the deadline. The child stays in `self`
    /// until it has exited, so a timeout still kills it on drop.
    fn exit_status(&mut self, what: &str) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = wait_for(DEADLINE, what, || child.try_wait().unwrap());
        self.child = None;
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads the greeting, sends `status`, returns (greeting, response).
fn hello_and_status(socket: &Path) -> (Value, Value) {
    let mut s =
        UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut hello = String::new();
    r.read_line(&mut hello).unwrap();
    s.write_all(b"{\"id\":1,\"cmd\":\"status\"}\n").unwrap();
    let mut resp = String::new();
    r.read_line(&mut resp).unwrap();
    let parse = |l: &str| -> Value {
        serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"))
    };
    (parse(&hello), parse(&resp))
}

#[test]
fn socket_activation_serves_the_inherited_listener() {
    let dir = Daemon::home();
    let path = dir.path().join("activated.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let cmd = Daemon::command_activated(dir.path(), &listener, "$$");
    let mut d = Daemon::spawn(dir, cmd);
    // From now on only the daemon can accept on it.
    drop(listener);

    // The connection waits in the backlog until the daemon accepts, as the
    // one that makes systemd start the service does.
    let (hello, status) = hello_and_status(&path);
    assert_eq!(hello["hello"]["protocol"], 1, "{hello}");
    assert_eq!(status["id"], 1, "{status}");
    assert_eq!(
        status["result"]["server"]["state"], "logged_out",
        "{status}"
    );
    assert!(
        !d.own_socket().exists(),
        "an activated daemon must not bind its own socket"
    );
    assert!(
        d.log().contains("socket activation"),
        "log says where the socket came from: {}",
        d.log()
    );
    assert!(d.terminate().success(), "{}", d.log());
}

#[test]
fn the_activated_socket_outlives_the_daemon() {
    let dir = Daemon::home();
    // Where p2pd.socket puts it: the path p2pd and p2pctl use by default.
    let path = dir.path().join("r/p2p/p2pd.sock");
    p2p_sys::fsutil::ensure_private_dir(path.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(&path).unwrap();
    let cmd = Daemon::command_activated(dir.path(), &listener, "$$");
    let mut d = Daemon::spawn(dir, cmd);
    assert_eq!(d.own_socket(), path);
    // Unlike the other tests, keep our copy: we play systemd, which holds
    // the socket across restarts of the service.
    let (hello, _) = hello_and_status(&path);
    assert_eq!(hello["hello"]["protocol"], 1, "{hello}");
    assert!(d.terminate().success(), "{}", d.log());
    // The next p2pctl must find the file to make systemd start p2pd again.
    assert!(
        path.exists(),
        "p2pd removed the socket file systemd listens on"
    );
    // And it is still the listening socket we passed: a connection queues.
    UnixStream::connect(&path).expect("connect to the socket systemd holds");
    drop(listener);
}

#[test]
fn listen_fds_for_another_pid_are_ignored() {
    let dir = Daemon::home();
    let listener = UnixListener::bind(dir.path().join("activated.sock")).unwrap();
    // pid 1 is never us: the variables were meant for some other process.
    let cmd = Daemon::command_activated(dir.path(), &listener, "1");
    let mut d = Daemon::spawn(dir, cmd);
    drop(listener);

    let own = d.own_socket();
    let status = wait_for(DEADLINE, "p2pd to bind its own control socket", || {
        UnixStream::connect(&own).ok()?;
        Some(hello_and_status(&own).1)
    });
    assert_eq!(status["result"]["server"]["state"], "logged_out");
    assert!(!d.log().contains("socket activation"), "{}", d.log());
    assert!(d.terminate().success(), "{}", d.log());
}

#[test]
fn a_non_listening_socket_as_fd_3_is_refused() {
    let dir = Daemon::home();
    let bound = dir.path().join("dgram.sock");
    let dgram = UnixDatagram::bind(&bound).unwrap();
    let cmd = Daemon::command_activated(dir.path(), &dgram, "$$");
    let mut d = Daemon::spawn(dir, cmd);
    let status = d.exit_status("p2pd to refuse the socket");
    assert_eq!(status.code(), Some(1), "{}", d.log());
    assert!(d.log().contains("not a stream socket"), "{}", d.log());
}

/// systemd's side of `NOTIFY_SOCKET`.
struct Notifications {
    socket: UnixDatagram,
    /// Every datagram received so far, in order.
    seen: Vec<String>,
}

impl Notifications {
    fn bind(path: &Path) -> Notifications {
        let socket = UnixDatagram::bind(path).unwrap();
        Notifications {
            socket,
            seen: Vec::new(),
        }
    }

    /// Receives datagrams until one has a line that `matches`, or panics
    /// at the deadline naming `what`. Returns that datagram.
    fn until(&mut self, what: &str, mut matches: impl FnMut(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}; got {:?}",
                self.seen
            );
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut buf = vec![0u8; 4096];
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    self.seen.push(msg.clone());
                    if msg.lines().any(&mut matches) {
                        return msg;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }
}

#[test]
fn ready_only_once_both_listeners_accept_and_stopping_on_sigterm() {
    let dir = Daemon::home();
    let mut notes = Notifications::bind(&dir.path().join("notify"));
    let mut cmd = Daemon::command(dir.path(), &bin("p2pd"));
    cmd.env("NOTIFY_SOCKET", dir.path().join("notify"));
    let mut d = Daemon::spawn(dir, cmd);

    let ready = notes.until("READY=1", |l| l == "READY=1");
    // No retries from here on: at READY=1 both must already accept.
    let (hello, status) = hello_and_status(&d.own_socket());
    assert_eq!(hello["hello"]["protocol"], 1);
    let peer = status["result"]["peer_listen"]
        .as_str()
        .unwrap_or_else(|| panic!("no peer_listen in {status}"));
    TcpStream::connect(peer).unwrap_or_else(|e| panic!("peer listener {peer}: {e}"));
    assert!(
        ready
            .lines()
            .any(|l| l == "STATUS=logged out (p2pctl login)"),
        "READY=1 comes with a STATUS= line: {ready:?}"
    );
    assert_eq!(
        notes.seen.iter().filter(|m| m.contains("READY=1")).count(),
        1
    );

    let exit = d.terminate();
    notes.until("STOPPING=1", |l| l == "STOPPING=1");
    assert!(exit.success(), "{}", d.log());
}

#[test]
fn status_follows_the_server_session() {
    let server = TestServer::start(&[]);
    server.add_user("alice", "correct horse");
    let dir = Daemon::home();
    let home = dir.path().to_path_buf();
    let mut notes = Notifications::bind(&home.join("notify"));
    let mut cmd = Daemon::command(&home, &bin("p2pd"));
    cmd.env("NOTIFY_SOCKET", home.join("notify"));
    let mut d = Daemon::spawn(dir, cmd);
    notes.until("READY=1", |l| l == "READY=1");

    let mut login = Daemon::command(&home, &bin("p2pctl"))
        .args(["login", "--server", &server.address(), "--user", "alice"])
        .args(["--password-stdin", "--trust-on-first-use"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success(), "login: {out:?}");
    let online = format!("STATUS=online as alice at {}", server.address());
    notes.until(&online, |l| l == online);

    // The server goes away: the daemon retries with backoff and says so.
    let mut server = server;
    server.kill9();
    let connecting = format!("STATUS=connecting to {} (attempt ", server.address());
    let msg = notes.until("a connecting STATUS= with attempt and retry", |l| {
        l.starts_with(&connecting) && l.contains(", retrying in ")
    });
    assert!(!msg.contains("READY=1"), "READY=1 is sent once: {msg:?}");

    let exit = d.terminate();
    notes.until("STOPPING=1", |l| l == "STOPPING=1");
    assert!(exit.success(), "{}", d.log());
}
