//! The throwaway PostgreSQL harness itself: it starts (as an unprivileged
//! user when we are root), answers on 127.0.0.1, hands out independent
//! databases, and leaves neither a process nor a file behind.

use p2p_testkit::{wait_for, TestPostgres, DEADLINE};

#[test]
fn throwaway_postgres_starts_serves_and_vanishes() {
    let pg = TestPostgres::start();
    let dir = pg.dir();
    assert_eq!(pg.psql("postgres", "SELECT 1 + 1"), "2");
    let a = pg.fresh_database();
    let b = pg.fresh_database();
    assert_ne!(a, b);
    assert!(a.starts_with("postgres://") && a.contains("@127.0.0.1:"));
    let listen = pg.psql("postgres", "SELECT current_setting('listen_addresses')");
    assert_eq!(listen, "127.0.0.1");
    let port = pg.port();
    drop(pg);
    assert!(!dir.exists(), "temp dir removed");
    wait_for(DEADLINE, "the server to stop listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
}

/// Where [`the_shared_cluster_serves_databases`] writes the shared cluster's
/// temp dir and port, when its parent test runs it as a child process.
const REPORT_ENV: &str = "P2P_TESTKIT_SHARED_REPORT";

/// The cluster `P2P_TEST_BACKEND=postgres` servers use: one per process,
/// handing out independent databases, over TCP and over its socket dir.
#[test]
fn the_shared_cluster_serves_databases() {
    let pg = TestPostgres::shared();
    assert!(std::ptr::eq(pg, TestPostgres::shared()), "one per process");
    let tcp = pg.fresh_database();
    let socket = pg.fresh_socket_database();
    assert_ne!(tcp, socket);
    assert!(socket.contains(&format!("?host={}&port=", pg.dir().display())));
    assert_eq!(pg.psql("postgres", "SELECT 1 + 1"), "2");
    if let Ok(report) = std::env::var(REPORT_ENV) {
        std::fs::write(report, format!("{}\n{}\n", pg.dir().display(), pg.port())).unwrap();
    }
}

/// The shared cluster is a static, never dropped: the process's exit stops
/// it and removes its temp dir. Runs [`the_shared_cluster_serves_databases`]
/// in a child test process and checks what it leaves behind.
#[test]
fn the_shared_cluster_is_gone_when_the_test_process_exits() {
    let scratch = p2p_testkit::short_tempdir();
    let report = scratch.path().join("report");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_shared_cluster_serves_databases"])
        .env(REPORT_ENV, &report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report = std::fs::read_to_string(&report).expect("the child reported");
    let (dir, port) = report.trim().split_once('\n').unwrap();
    // pg_ctl stop -w returned before the child exited, so no waiting here.
    assert!(!std::path::Path::new(dir).exists(), "{dir} left behind");
    let port: u16 = port.parse().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "PostgreSQL still listens on {port}"
    );
}
