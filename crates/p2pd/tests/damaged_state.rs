//! Damaged daemon state stops p2pd at start with a message naming the file
//! (and leaves the file as it was, to be repaired), instead of starting
//! empty or retrying a login that cannot work forever.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use p2p_testkit::{bin, short_tempdir, wait_for, DEADLINE};

/// A p2pd process, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn state_dir(home: &Path) -> PathBuf {
    home.join("state")
}

fn socket(home: &Path) -> PathBuf {
    home.join("p2pd.sock")
}

fn start(home: &Path) -> Daemon {
    let log = std::fs::File::create(home.join("p2pd.log")).unwrap();
    let child = Command::new(bin("p2pd"))
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("c"))
        .env("XDG_RUNTIME_DIR", home)
        .env_remove("RUST_LOG")
        .env_remove("P2PD_SOCKET")
        .arg("--state-dir")
        .arg(state_dir(home))
        .arg("--socket")
        .arg(socket(home))
        .args(["--peer-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start p2pd");
    Daemon(child)
}

/// Runs p2pd on `home` and expects it to refuse to start; returns stderr.
fn refused(home: &Path) -> String {
    let mut d = start(home);
    let status = wait_for(DEADLINE, "p2pd to refuse to start", || {
        d.0.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(1));
    assert!(!socket(home).exists(), "nothing listened");
    std::fs::read_to_string(home.join("p2pd.log")).unwrap()
}

/// Starts p2pd normally once (so the state dir is real), then stops it.
fn first_start(home: &Path) {
    let mut d = start(home);
    wait_for(DEADLINE, "p2pd control socket", || {
        socket(home).exists().then_some(())
    });
    let pid = nix::unistd::Pid::from_raw(d.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(d.0.wait().unwrap().success());
}

#[test]
fn an_emptied_inbox_is_refused_not_started_empty() {
    let home = short_tempdir();
    first_start(home.path());
    let inbox = state_dir(home.path()).join("inbox.db");
    assert!(std::fs::metadata(&inbox).unwrap().len() > 0);
    assert!(!state_dir(home.path()).join("inbox.db.new").exists());

    std::fs::write(&inbox, b"").unwrap();
    let err = refused(home.path());
    assert!(err.contains("inbox.db") && err.contains("0 bytes"), "{err}");
    assert_eq!(
        std::fs::metadata(&inbox).unwrap().len(),
        0,
        "left to repair"
    );
}

#[test]
fn a_new_inbox_is_never_left_empty_by_a_crash_while_making_it() {
    let home = short_tempdir();
    // What a crash right after SQLite created the file would leave behind.
    let dir = state_dir(home.path());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("inbox.db.new"), b"").unwrap();
    first_start(home.path());
    assert!(std::fs::metadata(dir.join("inbox.db")).unwrap().len() > 0);
    first_start(home.path());
}

#[test]
fn a_damaged_identity_key_is_refused_at_start() {
    let home = short_tempdir();
    first_start(home.path());
    let path = state_dir(home.path()).join("identity.json");
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let short = good["private"].as_str().unwrap()[..32].to_string();
    for bad in [
        serde_json::json!({"private": short, "public": good["public"]}),
        serde_json::json!({"private": good["private"], "public": "abcd"}),
        serde_json::json!({"private": good["private"], "public": "ab".repeat(32)}),
    ] {
        let bytes = serde_json::to_vec(&bad).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let err = refused(home.path());
        assert!(err.contains("identity.json"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "left to repair");
    }
}
