//! SIGHUP reload (SPEC §12) on the real server with a logged-in daemon.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use p2p_testkit::{short_tempdir, wait_for, TestDaemon, TestServer};

const DEADLINE: Duration = Duration::from_secs(20);

fn hangup(server: &TestServer) {
    let pid = server.pid().expect("running") as i32;
    kill(Pid::from_raw(pid), Signal::SIGHUP).expect("SIGHUP");
}

/// Waits for the `n`th "configuration reloaded" in the server's log.
fn wait_reloads(server: &TestServer, n: usize) {
    wait_for(DEADLINE, "the reload to finish", || {
        (server.log().matches("configuration reloaded").count() >= n).then_some(())
    });
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn sighup_applies_a_changed_broadcast_limit_and_keeps_the_session() {
    let dir = short_tempdir();
    let config = dir.path().join("p2p-server.toml");
    write(&config, "broadcast_limit = 1\n");
    let server = TestServer::start(&["--config", config.to_str().unwrap()]);
    let alice = TestDaemon::online(&server, "alice");
    let since = alice.status()["server"]["since"].clone();
    assert!(!since.is_null(), "{}", alice.status());
    let logins = server.log().matches("logged in").count();

    let (code, doc) = alice.ctl_json(&["broadcast", "one"]);
    assert_eq!(code, 0, "{doc}");
    let (code, doc) = alice.ctl_json(&["broadcast", "two"]);
    assert_ne!(code, 0);
    assert_eq!(doc["error"]["code"], "rate_limited", "{doc}");

    // A raised limit and a key that needs a restart.
    write(&config, "broadcast_limit = 3\nmax_clients = 60\n");
    hangup(&server);
    wait_reloads(&server, 1);
    let log = server.log();
    assert!(
        log.contains("max_clients") && log.contains("changed, needs a restart"),
        "{log}"
    );

    let (code, doc) = alice.ctl_json(&["broadcast", "two"]);
    assert_eq!(code, 0, "the new limit applies at once: {doc}");

    // The same session: never dropped, never logged in again.
    let status = alice.status();
    assert_eq!(status["server"]["state"], "online", "{status}");
    assert_eq!(status["server"]["since"], since, "{status}");
    assert_eq!(server.log().matches("logged in").count(), logins);

    // A broken file changes nothing and stops nothing.
    write(&config, "broadcast_limit = \"lots\"\n");
    hangup(&server);
    wait_for(DEADLINE, "the refused reload", || {
        server.log().contains("reload refused").then_some(())
    });
    let (code, doc) = alice.ctl_json(&["broadcast", "three"]);
    assert_eq!(code, 0, "the running limit (3) is kept: {doc}");
    let (code, doc) = alice.ctl_json(&["broadcast", "four"]);
    assert_eq!(doc["error"]["code"], "rate_limited", "{code} {doc}");
}

/// Whether a new TLS connection pinned to `fingerprint` gets through.
async fn pins(server: &TestServer, fingerprint: &str) -> bool {
    let pin = p2pd::tlsclient::PinVerifier::new(Some(fingerprint.to_string()));
    p2pd::handshake::connect(&server.addr.to_string(), None, pin)
        .await
        .is_ok()
}

/// A renewed certificate is served to new connections after SIGHUP, while
/// the logged-in session stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_renewed_certificate() {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let since = alice.status()["server"]["since"].clone();
    let old = server.fingerprint.clone();
    assert!(pins(&server, &old).await);

    let renewed = rcgen::generate_simple_self_signed(vec!["p2p-server".to_string()]).unwrap();
    let data = server.data_dir();
    std::fs::write(
        data.join("tls-key.pem"),
        renewed.signing_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(data.join("tls-cert.pem"), renewed.cert.pem()).unwrap();
    let out = server.admin(&["fingerprint"], "");
    let new = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(new.starts_with("SHA256:") && new != old, "{new}");
    assert!(!pins(&server, &new).await, "not before the reload");

    tokio::task::block_in_place(|| {
        hangup(&server);
        wait_reloads(&server, 1);
    });
    assert!(
        pins(&server, &new).await,
        "the renewed certificate is served"
    );
    assert!(!pins(&server, &old).await);
    let status = alice.status();
    assert_eq!(status["server"]["since"], since, "{status}");
}

/// The expiry `connect --no-wait` reports, as seconds from now.
fn invitation_life_s(from: &TestDaemon, to: &str) -> i64 {
    let (code, doc) = from.ctl_json(&["connect", to, "--no-wait"]);
    assert_eq!(code, 0, "{doc}");
    let at = doc["invited"]["expires_at"].as_str().expect("expires_at");
    let at = humantime::parse_rfc3339(at).expect("RFC 3339");
    let now = std::time::SystemTime::now();
    match at.duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// A changed `invitation_ttl` applies to the next invitation without a
/// restart (and is not reported as needing one).
#[test]
fn sighup_applies_a_changed_invitation_ttl_to_new_invitations() {
    let dir = short_tempdir();
    let config = dir.path().join("p2p-server.toml");
    write(&config, "invitation_ttl = \"5m\"\n");
    let server = TestServer::start(&["--config", config.to_str().unwrap()]);
    let alice = TestDaemon::online(&server, "alice");
    let _bob = TestDaemon::online(&server, "bob");
    let first = invitation_life_s(&alice, "bob");
    assert!((240..=300).contains(&first), "{first} s");

    write(&config, "invitation_ttl = \"20s\"\n");
    hangup(&server);
    wait_reloads(&server, 1);
    let log = server.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("invitation_ttl") && l.contains("needs a restart")),
        "{log}"
    );
    let second = invitation_life_s(&alice, "bob");
    assert!((1..=20).contains(&second), "{second} s");
}
