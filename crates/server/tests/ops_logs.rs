//! Logs (SPEC §12): an invalid `--log-level` is a usage error, journald
//! only when stderr really is the journal, `NO_COLOR` under a terminal.

use std::io::Read;
use std::process::{Command, Stdio};

use p2p_testkit::{bin, short_tempdir, wait_for, DEADLINE};

#[test]
fn invalid_log_level_is_a_usage_error() {
    let out = Command::new(bin("p2p-server"))
        .args(["--log-level", "verbose"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("off, error, warn, info, debug, trace"),
        "{err}"
    );

    // The same check for the config file's key.
    let dir = short_tempdir();
    let cfg = dir.path().join("server.toml");
    std::fs::write(&cfg, "log_level = \"loud\"\n").unwrap();
    let out = Command::new(bin("p2p-server"))
        .arg("--config")
        .arg(&cfg)
        .arg("check-config")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid log level"), "{err}");
}

/// Starts the server under a pty (`script`) with `env`, reads its terminal
/// output until it serves, then stops it with SIGTERM.
fn server_output(env: &str) -> String {
    let dir = short_tempdir();
    let d = dir.path();
    let inner = format!(
        "echo PID $$; exec env {env} {} --listen 127.0.0.1:0 --data-dir {} --metrics-listen off --admin-socket {}",
        bin("p2p-server").display(),
        d.join("data").display(),
        d.join("admin.sock").display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &format!("sh -c '{inner}'"), "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script(1)");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    wait_for(DEADLINE, "server log line on the pty", || {
        while let Ok(chunk) = rx.try_recv() {
            seen.extend(chunk);
        }
        String::from_utf8_lossy(&seen)
            .contains("serving")
            .then_some(())
    });
    let text = String::from_utf8_lossy(&seen).into_owned();
    let pid: i32 = text
        .split("PID ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("server pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = child.wait();
    text
}

#[test]
fn no_color_under_a_terminal() {
    let plain = server_output("NO_COLOR=1");
    assert!(plain.contains("INFO"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "escape bytes with NO_COLOR: {plain:?}"
    );
}

#[test]
fn journal_stream_mismatch_logs_to_stderr() {
    // JOURNAL_STREAM inherited from elsewhere (not our stderr's dev:inode).
    let out = server_output("NO_COLOR=1 JOURNAL_STREAM=1:1");
    assert!(out.contains("INFO") && out.contains("serving"), "{out}");
}

#[tokio::test]
async fn a_client_that_just_goes_away_is_not_a_bad_frame() {
    let server = p2p_testkit::TestServer::start(&[]);
    let pin = p2pd::tlsclient::PinVerifier::new(Some(server.fingerprint.clone()));
    let conn = p2pd::handshake::connect(&server.addr.to_string(), None, pin)
        .await
        .unwrap();
    // Gone without TLS close_notify: what a killed client looks like.
    drop(conn);
    let log = wait_for(DEADLINE, "the close logged", || {
        let log = server.log();
        log.contains("client left before logging in").then_some(log)
    });
    assert!(!log.contains("bad frame"), "{log}");
    assert!(!log.contains("docs.rs"), "{log}");
}
