//! An impostor on the server's address (SPEC §8 "Trust holds under attack"):
//! a real second `p2p-server` with its own certificate, listening where the
//! daemon's server was. Whatever the daemon's history (running, restarted,
//! damaged pin file), it must refuse the impostor before sending it a
//! password or a resume token, and keep the pin it had.
//!
//! The impostor here holds a copy of the real server's accounts and resume
//! tokens (a stolen database): it would accept anything the real server
//! accepts, so the pin is the only thing that stops the daemon.

use std::path::PathBuf;

use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE, FAST_RECONNECT};
use serde_json::Value;

const GARBAGE: &[u8] = b"{\"127.0.0.1:4400\": \"SHA256:0123";

fn online(server: &TestServer, user: &str, pw: &str) -> TestDaemon {
    let d = TestDaemon::start(FAST_RECONNECT);
    let (code, doc) = d.login(server, user, pw);
    assert_eq!(code, 0, "{user} login: {doc}");
    assert_eq!(doc["fingerprint"], server.fingerprint.as_str());
    d
}

fn pin_file(d: &TestDaemon) -> PathBuf {
    d.state_dir().join("known_servers.json")
}

fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Stops `real` and starts in its place (same port) a server with its own
/// certificate but a copy of everything else in `real`'s data dir (users.csv
/// and state.db: `real` must be started with `TestServer::start_embedded`).
fn stolen_database_impostor(real: &mut TestServer) -> TestServer {
    let mut fake = real.replace_with_impostor();
    fake.stop();
    let keep = |name: &str| name.starts_with("tls-");
    for entry in std::fs::read_dir(fake.data_dir()).unwrap() {
        let entry = entry.unwrap();
        if !keep(&entry.file_name().to_string_lossy()) {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    for entry in std::fs::read_dir(real.data_dir()).unwrap() {
        let entry = entry.unwrap();
        if !keep(&entry.file_name().to_string_lossy()) {
            std::fs::copy(entry.path(), fake.data_dir().join(entry.file_name())).unwrap();
        }
    }
    fake.restart();
    assert_ne!(fake.fingerprint, real.fingerprint);
    fake
}

/// Waits until the daemon stopped connecting (online, or gave up) and
/// returns its `status`.
fn settled(d: &TestDaemon) -> Value {
    wait_for(DEADLINE, "p2pd to stop connecting", || {
        let s = d.status();
        (s["server"]["state"] != "connecting").then_some(s)
    })
}

fn last_error(s: &Value) -> String {
    s["server"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Nothing about alice (no login of any kind, password or token) reached
/// the impostor.
fn impostor_heard_nothing(fake: &TestServer) {
    let log = fake.log();
    assert!(
        !log.contains("alice"),
        "the impostor heard from alice: {log}"
    );
    assert!(!log.contains("logged in"), "{log}");
}

#[test]
fn a_running_daemon_refuses_the_impostor_after_a_drop() {
    let mut real = TestServer::start_embedded(&[]);
    real.add_user("alice", "alice-password");
    let mut alice = online(&real, "alice", "alice-password");
    // It resumed from its saved session (the path that lost the pin).
    alice.restart();
    alice.wait_state("online", DEADLINE);
    let pins = read(&pin_file(&alice));

    let fake = stolen_database_impostor(&mut real);
    let s = alice.wait_state("logged_out", DEADLINE);
    let why = last_error(&s);
    assert!(
        why.contains(&fake.fingerprint) && why.contains(&real.fingerprint),
        "{why}"
    );
    assert!(alice.log().contains("SERVER CERTIFICATE CHANGED"));
    impostor_heard_nothing(&fake);
    assert_eq!(read(&pin_file(&alice)), pins, "the pin is unchanged");
}

#[test]
fn a_restarted_daemon_refuses_the_impostor_and_keeps_its_pin() {
    let mut real = TestServer::start_embedded(&[]);
    real.add_user("alice", "alice-password");
    let mut alice = online(&real, "alice", "alice-password");
    let pins = read(&pin_file(&alice));
    alice.stop();

    let fake = stolen_database_impostor(&mut real);
    alice.restart();
    let s = settled(&alice);
    assert_eq!(
        s["server"]["state"], "logged_out",
        "must not go online with the impostor: {s}"
    );
    let why = last_error(&s);
    assert!(
        why.contains(&fake.fingerprint) && why.contains(&real.fingerprint),
        "{why}"
    );
    impostor_heard_nothing(&fake);
    assert_eq!(read(&pin_file(&alice)), pins, "the pin is unchanged");
}

#[test]
fn a_saved_session_without_a_pin_is_not_resumed() {
    let real = TestServer::start(&[]);
    real.add_user("alice", "alice-password");
    let mut alice = online(&real, "alice", "alice-password");
    alice.stop();
    // The pin went missing (a saved session always pinned at its first
    // login): do not pin whatever answers now, and do not send the token.
    std::fs::write(pin_file(&alice), b"{}").unwrap();
    alice.restart();
    let s = settled(&alice);
    assert_eq!(s["server"]["state"], "logged_out", "{s}");
    let why = last_error(&s);
    assert!(
        why.contains("known_servers.json") && why.contains("--fingerprint"),
        "{why}"
    );
    assert!(!real.log().contains("method=\"token\""), "token sent");
    assert_eq!(read(&pin_file(&alice)), b"{}", "nothing pinned by itself");
}

#[test]
fn a_damaged_pin_file_refuses_a_login_to_the_impostor() {
    let mut real = TestServer::start_embedded(&[]);
    real.add_user("alice", "alice-password");
    let fake = stolen_database_impostor(&mut real);

    let alice = TestDaemon::start(FAST_RECONNECT);
    std::fs::write(pin_file(&alice), GARBAGE).unwrap();
    let (code, e) = alice.login(&fake, "alice", "alice-password");
    assert_ne!(code, 0, "{e}");
    let why = e["error"]["message"].as_str().unwrap();
    assert!(why.contains("known_servers.json"), "names the file: {why}");
    // Even with an explicit fingerprint: the pin could not be saved.
    let (code, e) = alice.authenticate(
        "login",
        &fake.address(),
        "alice",
        "alice-password",
        &["--fingerprint", &fake.fingerprint],
    );
    assert_ne!(code, 0, "{e}");
    impostor_heard_nothing(&fake);
    assert_eq!(
        read(&pin_file(&alice)),
        GARBAGE,
        "the file is left to repair"
    );
    assert_eq!(alice.state(), "logged_out", "and p2pd is not retrying");
}

#[test]
fn a_damaged_pin_file_stops_a_saved_session() {
    let real = TestServer::start(&[]);
    real.add_user("alice", "alice-password");
    let mut alice = online(&real, "alice", "alice-password");
    alice.stop();
    std::fs::write(pin_file(&alice), GARBAGE).unwrap();
    alice.restart();
    let s = settled(&alice);
    assert_eq!(
        s["server"]["state"], "logged_out",
        "refused, not retried: {s}"
    );
    assert!(last_error(&s).contains("known_servers.json"), "{s}");
    assert!(!real.log().contains("method=\"token\""), "token sent");
    assert_eq!(
        read(&pin_file(&alice)),
        GARBAGE,
        "the file is left to repair"
    );
}

#[test]
fn a_damaged_pin_file_stops_a_running_session_at_its_next_reconnect() {
    let mut real = TestServer::start(&[]);
    real.add_user("alice", "alice-password");
    let alice = online(&real, "alice", "alice-password");
    std::fs::write(pin_file(&alice), GARBAGE).unwrap();
    real.restart();
    let s = alice.wait_state("logged_out", DEADLINE);
    assert!(last_error(&s).contains("known_servers.json"), "{s}");
    assert!(!real.log().contains("method=\"token\""), "token sent");
    assert_eq!(read(&pin_file(&alice)), GARBAGE);
}
