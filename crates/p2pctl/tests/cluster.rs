//! Several p2p-server instances on one PostgreSQL (SPEC §9, issue 13):
//! real instances, a real throwaway database, real daemons.

use p2p_testkit::{TestDaemon, TestPostgres, TestServer, DEADLINE, FAST_RECONNECT};

/// Presence lease in these tests: short, so "leaves `list`" is seconds.
const LEASE: &str = "3s";

/// `n` instances on one fresh database, with the short lease.
fn cluster(pg: &TestPostgres, n: usize, extra: &[&str]) -> Vec<TestServer> {
    let mut flags = vec!["--presence-lease", LEASE];
    flags.extend_from_slice(extra);
    TestServer::cluster(pg, n, &flags)
}

/// Users on three instances see each other, and a broadcast through one
/// reaches the users on the others and a late login, each exactly once.
#[test]
fn three_instances_share_list_and_broadcasts() {
    let pg = TestPostgres::start();
    let s = cluster(&pg, 3, &[]);
    assert!(
        s.iter().all(|x| x.fingerprint == s[0].fingerprint),
        "one identity, one pin"
    );
    let alice = TestDaemon::online(&s[0], "alice");
    let bob = TestDaemon::online(&s[1], "bob");
    let carol = TestDaemon::online(&s[2], "carol");
    for d in [&alice, &bob, &carol] {
        assert_eq!(d.users(), ["alice", "bob", "carol"]);
    }
    alice.broadcast("one");
    bob.broadcast("two");
    assert_eq!(carol.broadcasts(2), ["one", "two"]);
    assert_eq!(bob.broadcasts(1), ["one"]);
    assert_eq!(alice.broadcasts(1), ["two"]);
    // A late login on any instance gets both, once each.
    s[1].add_user("dave", "dave-password");
    let dave = TestDaemon::start(FAST_RECONNECT);
    let (code, doc) = dave.login(&s[2], "dave", "dave-password");
    assert_eq!(code, 0, "{doc}");
    assert_eq!(dave.broadcasts(2), ["one", "two"]);
    // A marker after them: still nothing twice.
    carol.broadcast("three");
    assert_eq!(dave.broadcasts(3), ["one", "two", "three"]);
    assert_eq!(alice.broadcasts(2), ["two", "three"]);
}

/// The same user logging in on another instance replaces the first
/// session, which is told so.
#[test]
fn a_login_on_another_instance_replaces_the_session() {
    let pg = TestPostgres::start();
    let s = cluster(&pg, 2, &[]);
    let first = TestDaemon::online(&s[0], "alice");
    let second = TestDaemon::start(FAST_RECONNECT);
    let (code, doc) = second.login(&s[1], "alice", "alice-password");
    assert_eq!(code, 0, "{doc}");
    first.wait_state("replaced", DEADLINE);
    assert_eq!(second.users(), ["alice"]);
}

/// A broadcast is delivered by the poll when the database has just
/// terminated every instance's LISTEN connection.
#[test]
fn a_lost_notification_only_delays() {
    let pg = TestPostgres::start();
    let s = cluster(&pg, 2, &["--cluster-poll", "500ms"]);
    let alice = TestDaemon::online(&s[0], "alice");
    let bob = TestDaemon::online(&s[1], "bob");
    let url = s[0].database().unwrap().to_string();
    let db = url.rsplit('/').next().unwrap();
    let killed = pg.psql(
        db,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = 'p2p-server-listen'",
    );
    assert_eq!(killed.trim(), "2", "one LISTEN connection per instance");
    alice.broadcast("through the poll");
    assert_eq!(bob.broadcasts(1), ["through the poll"]);
}

/// `p2p-server kick` on one instance ends the session another instance
/// holds, as an operator's logout (the token goes too).
#[test]
fn a_kick_on_one_instance_reaches_the_session_on_another() {
    let pg = TestPostgres::start();
    let s = cluster(&pg, 2, &[]);
    let bob = TestDaemon::online(&s[1], "bob");
    let out = s[0].admin(&["kick", "bob"], "");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let status = bob.wait_state("logged_out", DEADLINE);
    let why = status["server"]["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("p2p-server kick"), "{status}");
    let out = s[0].admin(&["kick", "nobody"], "");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not online"));
}
