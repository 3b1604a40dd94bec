//! p2pd logs and SIGHUP (SPEC §12): an invalid `--log-level` is a usage
//! error; SIGHUP re-reads the config and never stops the daemon.

use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use p2p_testkit::{bin, wait_for, TestDaemon, DEADLINE, FAST_RECONNECT};

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
    let cfg = d
        .state_dir()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("c/p2p/p2pd.toml");
    std::fs::write(&cfg, format!("{FAST_RECONNECT}auto_accept = [\"alice\"]\n")).unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    wait_for(DEADLINE, "restart-needed logged", || {
        d.log()
            .contains("needs a restart: auto_accept")
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
