//! A second p2pd on the same state directory (with its own control socket)
//! is refused at start, naming the directory and the running daemon's
//! pid, instead of sharing the identity and saved session and taking the
//! account over.

use std::process::{Command, Stdio};

use p2p_testkit::{bin, short_tempdir, wait_for, TestDaemon, DEADLINE};

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused_naming_the_first() {
    let first = TestDaemon::start("");
    let other = short_tempdir();
    let log = other.path().join("p2pd.log");
    let mut second = Command::new(bin("p2pd"))
        .env("HOME", other.path())
        .env("XDG_CONFIG_HOME", other.path().join("c"))
        .env("XDG_RUNTIME_DIR", other.path())
        .env_remove("RUST_LOG")
        .env_remove("P2PD_SOCKET")
        .arg("--state-dir")
        .arg(first.state_dir())
        .arg("--socket")
        .arg(other.path().join("p2pd.sock"))
        .args(["--peer-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start p2pd");
    let status = wait_for(DEADLINE, "the second p2pd to refuse to start", || {
        second.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(1));
    let err = std::fs::read_to_string(&log).unwrap();
    let pid = first.pid().expect("first daemon running");
    assert!(
        err.contains(&first.state_dir().display().to_string())
            && err.contains(&format!("pid {pid}"))
            && err.contains("another p2pd"),
        "{err}"
    );
    assert!(!other.path().join("p2pd.sock").exists(), "nothing listened");
    // The first one is untouched and still answers.
    assert!(!first.state().is_empty(), "{}", first.status());
}
