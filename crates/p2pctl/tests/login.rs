//! End to end, with the real server, daemons and p2pctl: accounts, login,
//! presence, wrong passwords, resume after restarts, certificate pinning.

use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE, FAST_RECONNECT};
use serde_json::Value;

fn online(server: &TestServer, user: &str, pw: &str) -> TestDaemon {
    let d = TestDaemon::start(FAST_RECONNECT);
    let (code, doc) = d.login(server, user, pw);
    assert_eq!(code, 0, "{user} login: {doc}");
    assert_eq!(doc["user"], user);
    assert_eq!(doc["fingerprint"], server.fingerprint.as_str());
    d
}

fn names(list: &Value) -> Vec<String> {
    list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn three_users_log_in_and_see_each_other() {
    let server = TestServer::start(&[]);
    for u in ["alice", "bob", "carol"] {
        server.add_user(u, &format!("{u}-password"));
    }
    let daemons: Vec<_> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| online(&server, u, &format!("{u}-password")))
        .collect();
    for d in &daemons {
        let (code, list) = d.ctl_json(&["list"]);
        assert_eq!(code, 0);
        assert_eq!(names(&list), ["alice", "bob", "carol"]);
        for u in list["users"].as_array().unwrap() {
            let since = u["since"].as_str().unwrap();
            assert!(humantime::parse_rfc3339(since).is_ok(), "{since}");
        }
        let status = d.status();
        assert_eq!(status["server"]["state"], "online");
        assert_eq!(status["server"]["address"], server.address());
    }
    // Human output: aligned columns with a header.
    let out = daemons[0].ctl(&["list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("USER   ONLINE SINCE\n"), "{text}");
    assert_eq!(text.lines().count(), 4);
}

#[test]
fn status_json_has_the_documented_shape() {
    let server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    let d = TestDaemon::start(FAST_RECONNECT);
    let (code, s) = d.ctl_json(&["status"]);
    assert_eq!(code, 0);
    for key in ["server", "peer_listen", "sessions", "pending", "unread"] {
        assert!(s.get(key).is_some(), "missing {key} in {s}");
    }
    for key in ["state", "address", "user", "attempt", "next_retry_ms"] {
        assert!(
            s["server"].get(key).is_some(),
            "missing server.{key} in {s}"
        );
    }
    assert_eq!(s["server"]["state"], "logged_out");
    // Not logged in: list is exit 4 with an error document on stdout.
    let (code, e) = d.ctl_json(&["list"]);
    assert_eq!(code, 4, "{e}");
    assert_eq!(e["error"]["code"], "not_logged_in");
}

#[test]
fn wrong_password_is_refused_then_slowed_down() {
    let server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    let d = TestDaemon::start(FAST_RECONNECT);
    let out = d.ctl_stdin(
        &[
            "login",
            "--server",
            &server.address(),
            "--user",
            "alice",
            "--password-stdin",
            "--trust-on-first-use",
        ],
        "not-her-password\n",
    );
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("wrong user name or password"), "{err}");
    let s = d.status();
    assert_eq!(
        s["server"]["state"], "logged_out",
        "daemon stopped trying: {s}"
    );

    // Unknown users get the same answer (no user enumeration).
    let (_, e) = d.login(&server, "mallory", "whatever-password");
    assert_eq!(e["error"]["code"], "auth_failed");

    // Keep guessing: after a few free failures the server refuses at once.
    let codes: Vec<String> = (0..4)
        .map(|_| {
            d.login(&server, "alice", "guess-password").1["error"]["code"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(codes.iter().any(|c| c == "throttled"), "{codes:?}");
    // From the guessing address, even the right password waits out the
    // lock-out (a clean address gets in at once: tests/lockout.rs).
    let (code, e) = d.login(&server, "alice", "alice-password");
    assert_ne!(
        code, 0,
        "even the right password waits out the lock-out: {e}"
    );
    assert_eq!(e["error"]["code"], "throttled");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again in"),
        "{e}"
    );
    // Nothing about the passwords reached the logs.
    for log in [server.log(), d.log()] {
        assert!(!log.contains("alice-password") && !log.contains("guess-password"));
    }
}

#[test]
fn bad_input_from_the_command_line() {
    let server = TestServer::start(&[]);
    let d = TestDaemon::start(FAST_RECONNECT);
    let (code, e) = d.login(&server, "Alice", "whatever-password");
    assert_eq!(code, 2, "bad user name is a usage error: {e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("a-z"));
    let out = d.ctl(&["login", "--user", "alice"]);
    assert_eq!(out.status.code(), Some(2), "missing --server");
    let (code, e) = d.ctl_json(&["frobnicate"]);
    assert_eq!(code, 2);
    assert_eq!(e["error"]["code"], "bad_request");
    let out = d.ctl(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout).unwrap().contains("p2pctl"));
}

#[test]
fn p2pctl_without_a_daemon_exits_3_with_a_hint() {
    let dir = p2p_testkit::short_tempdir();
    let out = std::process::Command::new(p2p_testkit::bin("p2pctl"))
        .args([
            "--socket",
            dir.path().join("none.sock").to_str().unwrap(),
            "status",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1);
    assert!(
        err.contains("p2pd is not running") && err.contains("start it"),
        "{err}"
    );
}

#[test]
fn restarts_resume_without_the_password() {
    let mut server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    server.add_user("bob", "bob-password");
    let mut alice = online(&server, "alice", "alice-password");
    let bob = online(&server, "bob", "bob-password");
    let password_logins = server.log().matches("method=\"password\"").count();
    assert_eq!(password_logins, 2);

    server.restart();
    for d in [&alice, &bob] {
        d.wait_state("online", DEADLINE);
    }
    let log = server.log();
    assert_eq!(
        log.matches("method=\"password\"").count(),
        2,
        "no argon2 on reconnect"
    );
    assert!(log.matches("method=\"token\"").count() >= 2, "{log}");
    let (_, list) = bob.ctl_json(&["list"]);
    assert_eq!(names(&list), ["alice", "bob"]);

    // A restarted daemon logs in again by itself from its saved session.
    alice.restart();
    alice.wait_state("online", DEADLINE);
    assert_eq!(server.log().matches("method=\"password\"").count(), 2);

    // Logout forgets the session: a restart stays logged out.
    let (code, doc) = alice.ctl_json(&["logout"]);
    assert_eq!((code, doc["user"].as_str()), (0, Some("alice")));
    alice.restart();
    assert_eq!(alice.state(), "logged_out");
    let (_, list) = bob.ctl_json(&["list"]);
    assert_eq!(names(&list), ["bob"]);
}

#[test]
fn a_second_login_replaces_the_first_which_stays_down() {
    let server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    let mut laptop = online(&server, "alice", "alice-password");
    let _desktop = online(&server, "alice", "alice-password");
    let s = laptop.wait_state("replaced", DEADLINE);
    assert!(
        s["server"]["last_error"]
            .as_str()
            .unwrap()
            .contains("replaced"),
        "{s}"
    );
    // Restarting the replaced daemon does not take the session back.
    laptop.restart();
    assert_eq!(laptop.state(), "logged_out");
    let (code, e) = laptop.ctl_json(&["list"]);
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (4, Some("not_logged_in"))
    );
}

#[test]
fn a_changed_server_certificate_is_refused_loudly() {
    let mut server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    let alice = online(&server, "alice", "alice-password");
    let pinned = server.fingerprint.clone();

    // Same address, different certificate: the daemon must not log in.
    let impostor = server.replace_with_impostor();
    impostor.add_user("alice", "alice-password");
    assert_ne!(impostor.fingerprint, pinned);
    let s = alice.wait_state("logged_out", DEADLINE);
    let why = s["server"]["last_error"].as_str().unwrap();
    assert!(
        why.contains(&impostor.fingerprint) && why.contains(&pinned),
        "{why}"
    );
    assert!(alice.log().contains("SERVER CERTIFICATE CHANGED"));
    assert!(
        !impostor.log().contains("logged in"),
        "nothing was sent to the impostor"
    );

    // A fresh login to it is refused too, saying what to do.
    let (code, e) = alice.login(&impostor, "alice", "alice-password");
    assert_ne!(code, 0);
    assert_eq!(e["error"]["code"], "certificate_changed");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--fingerprint"));

    // Explicitly pinning the new fingerprint is how a real rotation is accepted.
    let pin = |d: &TestDaemon, fp: &str| {
        d.authenticate(
            "login",
            &impostor.address(),
            "alice",
            "alice-password",
            &["--fingerprint", fp],
        )
    };
    let (code, doc) = pin(&alice, &impostor.fingerprint);
    assert_eq!(code, 0, "{doc}");
    // And a wrong explicit pin is refused before logging in.
    let other = TestDaemon::start(FAST_RECONNECT);
    let (_, e) = pin(&other, &pinned);
    assert_eq!(e["error"]["code"], "certificate_changed");
}

#[test]
fn open_registration_and_account_removal() {
    let closed = TestServer::start(&[]);
    let d = TestDaemon::start(FAST_RECONNECT);
    let register = |addr: &str, pw: &str| d.authenticate("register", addr, "dave", pw, &[]);
    let (_, e) = register(&closed.address(), "dave-password");
    assert_eq!(e["error"]["code"], "registration_closed");

    let server = TestServer::start(&["--open-registration"]);
    let (code, doc) = register(&server.address(), "dave-password");
    assert_eq!(code, 0, "{doc}");
    let (_, e) = register(&server.address(), "other-password");
    assert_eq!(e["error"]["code"], "user_exists");
    let listed = server.admin(&["user", "list", "--json"], "");
    let users: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(users["users"][0]["user"], "dave");

    // The operator removes the account while dave is online: his session ends.
    let e = TestDaemon::start(FAST_RECONNECT);
    let (code, _) = e.login(&server, "dave", "dave-password");
    assert_eq!(code, 0);
    let out = server.admin(&["user", "remove", "dave"], "");
    assert!(out.status.success());
    e.wait_state("logged_out", DEADLINE);
    let (_, err) = e.login(&server, "dave", "dave-password");
    assert_eq!(err["error"]["code"], "auth_failed");
}

#[test]
fn admin_commands_refuse_bad_input_and_change_nothing() {
    // Compares users.csv itself before and after.
    let server = TestServer::start_embedded(&[]);
    let ok = server.admin(
        &["user", "add", "alice", "--password-stdin"],
        "alice-password\n",
    );
    assert!(ok.status.success());
    let before = std::fs::read(server.data_dir().join("users.csv")).unwrap();
    for (args, stdin, needle) in [
        (
            vec!["user", "add", "alice", "--password-stdin"],
            "other-password\n",
            "already exists",
        ),
        (
            vec!["user", "add", "-x", "--password-stdin"],
            "other-password\n",
            "unexpected argument '-x'",
        ),
        (
            vec!["user", "add", "bob", "--password-stdin"],
            "short\n",
            "at least 8",
        ),
        (
            vec!["user", "add", "Bob", "--password-stdin"],
            "long-enough\n",
            "a-z",
        ),
        (vec!["user", "remove", "nobody"], "", "no such user"),
        (
            vec!["user", "passwd", "nobody", "--password-stdin"],
            "long-enough\n",
            "no such user",
        ),
    ] {
        let out = server.admin(&args, stdin);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?}"
        );
    }
    assert_eq!(
        std::fs::read(server.data_dir().join("users.csv")).unwrap(),
        before
    );
    let fp = server.admin(&["fingerprint"], "");
    assert_eq!(
        String::from_utf8(fp.stdout).unwrap().trim(),
        server.fingerprint
    );
}

#[test]
fn passwd_invalidates_saved_sessions() {
    let mut server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    let alice = online(&server, "alice", "alice-password");
    let out = server.admin(
        &["user", "passwd", "alice", "--password-stdin"],
        "new-alice-password\n",
    );
    assert!(out.status.success());
    server.restart();
    let s = alice.wait_state("logged_out", DEADLINE);
    assert!(
        s["server"]["last_error"]
            .as_str()
            .unwrap()
            .contains("password"),
        "{s}"
    );
    wait_for(DEADLINE, "re-login with the new password", || {
        (alice.login(&server, "alice", "new-alice-password").0 == 0).then_some(())
    });
}

#[test]
fn a_failed_login_keeps_the_working_session() {
    let server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    let mut alice = online(&server, "alice", "alice-password");
    // A malformed pin is refused before anything is touched.
    let (code, e) = alice.authenticate(
        "login",
        &server.address(),
        "alice",
        "alice-password",
        &["--fingerprint", "nonsense"],
    );
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (2, Some("bad_request"))
    );
    // A wrong password: refused, and the session that worked still works.
    let (code, e) = alice.login(&server, "alice", "wrong-password");
    assert_eq!(e["error"]["code"], "auth_failed");
    assert_ne!(code, 0);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still logged in"),
        "{e}"
    );
    assert_eq!(alice.state(), "online");
    let (code, list) = alice.ctl_json(&["list"]);
    assert_eq!((code, names(&list)), (0, vec!["alice".to_string()]));
    // Logging out twice: the second time there is nobody to log out.
    assert_eq!(alice.ctl_json(&["logout"]).1["user"], "alice");
    assert_eq!(alice.ctl_json(&["logout"]).1["user"], Value::Null);
    let s = alice.status();
    assert_eq!(
        (s["server"]["user"].clone(), s["server"]["address"].clone()),
        (Value::Null, Value::Null)
    );
    // A failed login while logged out leaves nothing that logs in by itself.
    let (code, _) = alice.login(&server, "alice", "wrong-password");
    assert_ne!(code, 0);
    alice.restart();
    assert_eq!(alice.state(), "logged_out");
}

#[test]
fn operator_certificates_and_the_socket_variable() {
    // A server started with --tls-cert/--tls-key presents that certificate:
    // reuse the one another server generated, and the fingerprint follows.
    let first = TestServer::start(&[]);
    let data = first.data_dir();
    let (cert, key) = (data.join("tls-cert.pem"), data.join("tls-key.pem"));
    let server = TestServer::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(server.fingerprint, first.fingerprint);
    let fp = server.admin(&["fingerprint", "--tls-cert", cert.to_str().unwrap()], "");
    assert_eq!(
        String::from_utf8(fp.stdout).unwrap().trim(),
        first.fingerprint
    );
    server.add_user("alice", "alice-password");
    let alice = online(&server, "alice", "alice-password");

    // P2PD_SOCKET points p2pctl at a daemon, whatever HOME and XDG say.
    let elsewhere = p2p_testkit::short_tempdir();
    let out = std::process::Command::new(p2p_testkit::bin("p2pctl"))
        .args(["--json", "status"])
        .env("HOME", elsewhere.path())
        .env("XDG_RUNTIME_DIR", elsewhere.path())
        .env("P2PD_SOCKET", alice.socket())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(p2p_testkit::parse_json(&out)["server"]["user"], "alice");
}
