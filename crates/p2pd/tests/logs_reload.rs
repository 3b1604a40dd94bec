//! p2pd logs and SIGHUP (SPEC §12): an invalid `--log-level` is a usage
//! error; SIGHUP re-reads the config and never stops the daemon.

use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use p2p_testkit::{bin, wait_for, TestDaemon, TestServer, DEADLINE, FAST_RECONNECT};

#[test]
fn invalid_log_level_is_a_usage_error() {
    let out = Command::new(bin("p2pd"))
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
}

#[test]
fn sighup_keeps_p2pd_serving_and_rereads_the_config() {
    let d = TestDaemon::start(FAST_RECONNECT);
    let pid = Pid::from_raw(d.pid().expect("pid") as i32);
    kill(pid, Signal::SIGHUP).unwrap();
    wait_for(DEADLINE, "reload logged", || {
        d.log().contains("SIGHUP: config reloaded").then_some(())
    });
    assert!(d.status().is_object(), "status after SIGHUP");

    // A key that needs a restart is named, and the daemon keeps serving.
    let cfg = config_file(&d);
    std::fs::write(
        &cfg,
        format!("{FAST_RECONNECT}peer_handshakes_per_source = 3\n"),
    )
    .unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    wait_for(DEADLINE, "restart-needed logged", || {
        d.log()
            .contains("needs a restart: peer_handshakes_per_source")
            .then_some(())
    });
    // A broken file keeps the running config.
    std::fs::write(&cfg, "auto_accept = [\n").unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    wait_for(DEADLINE, "refused reload logged", || {
        d.log().contains("config not reloaded").then_some(())
    });
    assert!(d.status().is_object(), "status after SIGHUPs");
    assert!(d.socket().exists());
}

#[test]
fn journal_stream_mismatch_logs_to_stderr() {
    let d = TestDaemon::start_with_env(FAST_RECONNECT, &[("JOURNAL_STREAM", "1:1")]);
    wait_for(DEADLINE, "p2pd ready on stderr", || {
        d.log().contains("p2pd ready").then_some(())
    });
}

/// The daemon's config file in its test directory.
fn config_file(d: &TestDaemon) -> std::path::PathBuf {
    let dir = d.state_dir();
    dir.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("c/p2p/p2pd.toml")
}

/// A user added to `auto_accept` and a SIGHUP: that user's next invitation
/// is accepted by itself, without a restart.
#[test]
fn sighup_applies_a_changed_auto_accept() {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let bob = TestDaemon::online(&server, "bob");
    // Not listed: alice's invitation waits for bob's answer.
    assert_eq!(alice.ctl_json(&["connect", "bob", "--no-wait"]).0, 0);
    wait_for(DEADLINE, "alice's invitation pending at bob", || {
        let (_, r) = bob.ctl_json(&["requests"]);
        (r["requests"].as_array()?.first()?["from"] == "alice").then_some(())
    });
    assert_eq!(bob.ctl_json(&["reject", "alice"]).0, 0);

    std::fs::write(
        config_file(&bob),
        format!("{FAST_RECONNECT}auto_accept = [\"alice\"]\n"),
    )
    .unwrap();
    let pid = Pid::from_raw(bob.pid().expect("pid") as i32);
    kill(pid, Signal::SIGHUP).unwrap();
    wait_for(DEADLINE, "auto_accept applied", || {
        bob.log()
            .contains("SIGHUP: auto_accept changed")
            .then_some(())
    });
    let (code, doc) = alice.ctl_json(&["connect", "bob", "--timeout", "20s"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["connected"]["peer"], "bob", "{doc}");
}
