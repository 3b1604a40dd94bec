//! The rough edges of a first `login` (issue 11): a mistyped address is
//! refused before anything else happens, and a first login to an address
//! where no p2p-server answers is an error instead of an endless
//! background retry (while a server that did let us in before is still
//! retried when it is down).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};

use p2p_testkit::{bin, short_tempdir, TestDaemon, TestServer, FAST_RECONNECT};

#[test]
fn a_mistyped_server_address_is_a_usage_error_before_anything_else() {
    // No daemon at all: the address is checked before the daemon is
    // reached (exit 3) or a password is read.
    let home = short_tempdir();
    for (server, says) in [
        ("127.0.0.1:99999", "99999"),
        ("h:1:2", "more than one ':'"),
        ("", "empty"),
        (":4400", "no host"),
    ] {
        let mut child = Command::new(bin("p2pctl"))
            .env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", home.path())
            .env_remove("P2PD_SOCKET")
            .args([
                "login",
                "--server",
                server,
                "--user",
                "alice",
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It may exit before reading: a broken pipe here is the point.
        let _ = child.stdin.take().unwrap().write_all(b"alice-password\n");
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{server:?}: {err}");
        assert!(
            err.contains("--server") && err.contains(says),
            "{server:?}: {err}"
        );
    }
}

/// A TCP port nothing listens on (bound, then let go).
fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn a_first_login_where_no_server_answers_is_an_error_not_a_retry() {
    let d = TestDaemon::start(FAST_RECONNECT);
    let addr = closed_port();
    let (code, e) = d.authenticate("login", &addr, "alice", "alice-password", &[]);
    assert_eq!(code, 4, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("cannot reach {addr}")) && msg.contains("is this a p2p-server?"),
        "{msg}"
    );
    assert!(!msg.contains("keeps trying"), "{msg}");
    let s = d.status();
    assert_eq!(
        s["server"]["state"], "logged_out",
        "no background retry: {s}"
    );

    // Something that accepts and hangs up without the preamble.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let closer = std::thread::spawn(move || {
        let (conn, _) = silent.accept().unwrap();
        drop(conn);
    });
    let (code, e) = d.authenticate("login", &silent_addr, "alice", "alice-password", &[]);
    closer.join().unwrap();
    assert_eq!(code, 4, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is this a p2p-server?"),
        "{e}"
    );
    assert_eq!(d.status()["server"]["state"], "logged_out");
}

#[test]
fn a_server_that_let_us_in_before_is_still_retried_when_down() {
    let mut server = TestServer::start(&[]);
    let d = TestDaemon::online(&server, "alice");
    assert_eq!(d.ctl(&["logout"]).status.code(), Some(0));
    server.stop();
    let (code, e) = d.login(&server, "alice", "alice-password");
    assert_eq!(code, 4, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("keeps trying"), "{msg}");
    assert_eq!(d.status()["server"]["state"], "connecting");
}

/// `p2pctl ARGS` with no daemon to reach: what is refused here is refused
/// before the daemon is asked (that would be exit 3).
fn ctl_without_daemon(args: &[&str]) -> (Option<i32>, String) {
    let home = short_tempdir();
    let out = Command::new(bin("p2pctl"))
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.path())
        .env_remove("P2PD_SOCKET")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_first_login_without_a_terminal_needs_a_fingerprint_or_trust_on_first_use() {
    let server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    let d = TestDaemon::start(FAST_RECONNECT);
    let login = ["login", "--server", &server.address(), "--user", "alice"];
    let out = d.ctl_stdin(
        &[&login[..], &["--password-stdin"]].concat(),
        "alice-password\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--fingerprint") && err.contains("--trust-on-first-use"),
        "{err}"
    );
    assert_eq!(d.state(), "logged_out", "nothing was sent");
    assert!(
        !d.state_dir().join("known_servers.json").exists(),
        "nothing pinned"
    );

    // A malformed fingerprint is refused before the daemon is even asked.
    let (code, err) = ctl_without_daemon(
        &[
            &login[..],
            &["--password-stdin", "--fingerprint", "SHA256:abc"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("SHA256:<64 hex digits>"), "{err}");

    // A well-formed one that does not match: not called pinned, and the
    // server's certificate is not offered as the thing to pin.
    let wrong = format!("SHA256:{}", "ab".repeat(32));
    let (code, e) = d.authenticate(
        "login",
        &server.address(),
        "alice",
        "alice-password",
        &["--fingerprint", &wrong],
    );
    assert_ne!(code, 0, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("not the --fingerprint given"), "{msg}");
    assert!(
        !msg.contains("pinned:") && !msg.contains("is pinned"),
        "{msg}"
    );
    assert!(
        !msg.contains(&format!("--fingerprint {}", server.fingerprint)),
        "{msg}"
    );
    assert_eq!(d.state(), "logged_out");

    // Deciding explicitly works; from then on the pin is on file and no
    // flag is needed.
    let (code, e) = d.login(&server, "alice", "alice-password");
    assert_eq!(code, 0, "{e}");
    assert_eq!(d.ctl(&["logout"]).status.code(), Some(0));
    let out = d.ctl_stdin(
        &[&login[..], &["--password-stdin"]].concat(),
        "alice-password\n",
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// A tmux server of its own (socket in a temp dir kept while it runs),
/// killed when dropped.
struct Tmux(std::path::PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmux {
    fn new() -> Tmux {
        let dir = short_tempdir();
        Tmux(dir.path().join("tmux.sock"), dir)
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    fn wait_screen(&self, what: &str) -> String {
        p2p_testkit::wait_for(p2p_testkit::DEADLINE, what, || {
            let s = self.screen();
            s.contains(what).then_some(s)
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn on_a_terminal_the_fingerprint_is_shown_and_confirmed_before_the_password() {
    let server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    let d = TestDaemon::start(FAST_RECONNECT);
    let tmux = Tmux::new();
    let cmd = format!(
        "{} --socket {} login --server {} --user alice; echo EXIT=$?; sleep 600",
        bin("p2pctl").display(),
        d.socket().display(),
        server.address()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "200",
        "-y",
        "40",
        &cmd,
    ]);
    let screen = tmux.wait_screen("[y/N]");
    assert!(screen.contains(&server.fingerprint), "{screen}");
    assert!(
        !screen.contains("Password"),
        "asked before the password: {screen}"
    );
    assert_eq!(d.state(), "logged_out", "nothing sent yet");
    tmux.run(&["send-keys", "-t", "t", "y", "Enter"]);
    tmux.wait_screen("Password:");
    tmux.run(&["send-keys", "-t", "t", "alice-password", "Enter"]);
    let screen = tmux.wait_screen("EXIT=");
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert_eq!(d.state(), "online");
    let pins = std::fs::read_to_string(d.state_dir().join("known_servers.json")).unwrap();
    assert!(pins.contains(&server.fingerprint), "{pins}");
}

#[test]
fn login_without_server_and_user_reuses_the_last_ones_and_says_so() {
    let fresh = TestDaemon::start(FAST_RECONNECT);
    let out = fresh.ctl_stdin(&["login", "--password-stdin"], "pw\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--server") && err.contains("--user"), "{err}");

    let server = TestServer::start(&[]);
    let mut d = TestDaemon::online(&server, "alice");
    // After a restart the saved session names them.
    d.restart();
    let out = d.ctl_stdin(&["login", "--password-stdin"], "alice-password\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("logging in to {} as alice", server.address())),
        "{err}"
    );
    assert_eq!(d.state(), "online");
}
