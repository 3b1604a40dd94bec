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
