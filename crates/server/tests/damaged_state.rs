//! Issue 14, damaged server state, with the real binary: a 0-byte
//! `state.db` and a certificate without its key (or the reverse) stop the
//! server at start with a message saying what to do, instead of starting
//! empty or with a new identity; `users.csv` turned to garbage while the
//! server runs keeps the last good accounts working.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use p2p_testkit::{bin, short_tempdir, wait_for, TestDaemon, TestServer, DEADLINE, FAST_RECONNECT};

/// Kills the child if the test fails while it still runs.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `p2p-server` on `data_dir`, expects it to exit with failure by
/// itself, and returns what it printed on stderr.
fn refused_start(data_dir: &Path) -> String {
    let log = short_tempdir();
    let err_path = log.path().join("stderr");
    let child = Command::new(bin("p2p-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let status = wait_for(DEADLINE, "p2p-server to refuse to start", || {
        child.0.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(1));
    std::fs::read_to_string(err_path).unwrap()
}

#[test]
fn an_empty_state_db_is_refused() {
    let mut server = TestServer::start_embedded(&[]);
    server.stop();
    let db = server.data_dir().join("state.db");
    std::fs::write(&db, b"").unwrap();
    let err = refused_start(&server.data_dir());
    assert!(err.contains("state.db: empty (0 bytes)"), "{err}");
    assert!(err.contains("restore it from a backup"), "{err}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "left as found");
}

#[test]
fn a_missing_certificate_is_refused_not_regenerated() {
    let mut server = TestServer::start_embedded(&[]);
    server.stop();
    let (cert, key) = (
        server.data_dir().join("tls-cert.pem"),
        server.data_dir().join("tls-key.pem"),
    );
    let key_before = std::fs::read(&key).unwrap();
    std::fs::remove_file(&cert).unwrap();
    let err = refused_start(&server.data_dir());
    assert!(err.contains("tls-cert.pem: missing, but"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), key_before, "key untouched");
    assert!(!cert.exists());
}

#[test]
fn garbage_in_users_csv_keeps_the_last_good_accounts() {
    let server = TestServer::start_embedded(&[]);
    server.add_user("alice", "alice-password");
    // Logged in once, so the server has read the file with alice in it.
    let alice = TestDaemon::start(FAST_RECONNECT);
    assert_eq!(alice.login(&server, "alice", "alice-password").0, 0);
    assert_eq!(alice.ctl(&["logout"]).status.code(), Some(0));
    let path = server.data_dir().join("users.csv");
    let garbage = b"\x00\xffthis is not,a users file\n\"unterminated\n";
    p2p_sys::fsutil::write_atomic(&path, garbage, 0o600).unwrap();
    wait_for(DEADLINE, "the server to notice the garbage", || {
        server
            .log()
            .contains("ACCOUNT FILE UNREADABLE")
            .then_some(())
    });
    let (code, doc) = alice.login(&server, "alice", "alice-password");
    assert_eq!(code, 0, "{doc}");
}
