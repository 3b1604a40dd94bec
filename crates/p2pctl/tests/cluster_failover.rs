//! Failures in a cluster of p2p-server instances on one PostgreSQL (SPEC §9,
//! issue 13): `kill -9` of an instance, an account removed or its password
//! changed on another instance, a replacement whose bus event is lost, and
//! the database itself going down and coming back. Real instances, a real
//! throwaway database, real daemons.

use p2p_testkit::{wait_for, TestDaemon, TestPostgres, TestServer, DEADLINE, FAST_RECONNECT};
use serde_json::Value;

/// Presence lease in these tests: short, so "leaves `list`" is seconds.
const LEASE: &str = "3s";

/// `n` instances on one fresh database, with the short lease.
fn cluster(pg: &TestPostgres, n: usize, extra: &[&str]) -> Vec<TestServer> {
    let mut flags = vec!["--presence-lease", LEASE];
    flags.extend_from_slice(extra);
    TestServer::cluster(pg, n, &flags)
}

/// The database name in an instance's URL (for `psql`).
fn db_name(s: &TestServer) -> String {
    let url = s.database().expect("a cluster instance");
    url.rsplit('/').next().unwrap().to_string()
}

/// A daemon logged in as a new account `user` with `--server` listing
/// `servers` (the first is the one it starts on), pinned to their one
/// identity.
fn online_with_list(servers: &[&TestServer], user: &str) -> TestDaemon {
    let password = format!("{user}-password");
    servers[0].add_user(user, &password);
    let d = TestDaemon::start(FAST_RECONNECT);
    let list = server_list(servers);
    let (code, doc) = d.authenticate(
        "login",
        &list,
        user,
        &password,
        &["--fingerprint", &servers[0].fingerprint],
    );
    assert_eq!(code, 0, "{user} could not log in: {doc}");
    d
}

fn server_list(servers: &[&TestServer]) -> String {
    servers
        .iter()
        .map(|s| s.address())
        .collect::<Vec<_>>()
        .join(",")
}

/// The instance `d` is on (`status`), once online.
fn current(d: &TestDaemon) -> String {
    let s = d.wait_state("online", DEADLINE);
    s["server"]["current"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until `d`'s `list` is exactly `want`.
fn wait_users(d: &TestDaemon, want: &[&str]) {
    wait_for(DEADLINE, &format!("list {want:?}"), || {
        (d.users() == want).then_some(())
    });
}

fn broadcast(d: &TestDaemon, text: &str) -> Value {
    let (code, doc) = d.ctl_json(&["broadcast", text]);
    assert_eq!(code, 0, "{doc}");
    doc["broadcast"].clone()
}

/// The broadcast texts in `d`'s inbox once its last one is `last`: a
/// marker sent after everything else, so a duplicate of anything before it
/// would have arrived by then (delivery is in id order).
fn broadcasts_up_to(d: &TestDaemon, last: &str) -> Vec<String> {
    wait_for(DEADLINE, &format!("broadcasts up to {last:?}"), || {
        let (_, doc) = d.ctl_json(&["inbox", "--all"]);
        let got: Vec<String> = doc["messages"]
            .as_array()?
            .iter()
            .filter(|m| m["kind"] == "broadcast")
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect();
        (got.last().map(String::as_str) == Some(last)).then_some(got)
    })
}

/// kill -9 of the instance holding alice (logged in with the list of all
/// three): she is back online through another by herself; what she had
/// received there is not delivered again (its acknowledgement may have died
/// with the instance), and the broadcast she had acknowledged just before
/// the kill reaches bob and a user who logs in afterwards, once each;
/// carol, whose daemon knows only the killed instance, leaves `list` when
/// her lease runs out.
#[test]
fn kill_9_of_an_instance_fails_alice_over_and_loses_nothing() {
    let pg = TestPostgres::start();
    let mut s = cluster(&pg, 3, &[]);
    let alice = online_with_list(&[&s[0], &s[1], &s[2]], "alice");
    assert_eq!(current(&alice), s[0].address());
    let _carol = TestDaemon::online(&s[0], "carol");
    let bob = TestDaemon::online(&s[1], "bob");
    wait_users(&bob, &["alice", "bob", "carol"]);

    broadcast(&bob, "to alice");
    assert_eq!(broadcasts_up_to(&alice, "to alice"), ["to alice"]);
    broadcast(&alice, "just before the kill");
    s[0].kill9();

    let dead = s[0].address();
    wait_for(DEADLINE, "alice online through another instance", || {
        let st = alice.status();
        (st["server"]["state"] == "online" && st["server"]["current"] != dead.as_str())
            .then_some(())
    });
    // carol does not come back: gone once her lease runs out.
    wait_users(&bob, &["alice", "bob"]);
    assert_eq!(alice.users(), ["alice", "bob"]);

    s[2].add_user("dave", "dave-password");
    let dave = TestDaemon::start(FAST_RECONNECT);
    let (code, doc) = dave.login(&s[2], "dave", "dave-password");
    assert_eq!(code, 0, "{doc}");
    broadcast(&bob, "after the failover");
    assert_eq!(
        broadcasts_up_to(&alice, "after the failover"),
        ["to alice", "after the failover"]
    );
    assert_eq!(
        broadcasts_up_to(&dave, "after the failover"),
        ["to alice", "just before the kill", "after the failover"]
    );
    broadcast(&dave, "to bob");
    assert_eq!(
        broadcasts_up_to(&bob, "to bob"),
        ["just before the kill", "to bob"]
    );
}

/// `user remove bob --database` closes bob's session on the instance that
/// holds it (not the one the command happened to be near), and he cannot
/// log in anywhere afterwards.
#[test]
fn removing_an_account_closes_its_session_on_any_instance() {
    let pg = TestPostgres::start();
    let s = cluster(&pg, 2, &[]);
    let alice = TestDaemon::online(&s[0], "alice");
    let bob = TestDaemon::online(&s[1], "bob");
    wait_users(&alice, &["alice", "bob"]);
    let url = s[0].database().unwrap().to_string();
    let out = s[0].admin(&["user", "remove", "bob", "--database", &url], "");
    assert!(out.status.success(), "{out:?}");
    bob.wait_state("logged_out", DEADLINE);
    wait_users(&alice, &["alice"]);
    for server in &s {
        let (code, doc) = bob.login(server, "bob", "bob-password");
        assert_ne!(code, 0, "{doc}");
        assert_eq!(doc["error"]["code"], "auth_failed", "{doc}");
    }
    assert_eq!(alice.state(), "online");
}

/// `user passwd bob --database` while bob is online: as with one server,
/// his session goes on, but his resume token no longer works on any
/// instance: when his instance is killed, the daemon's failover is refused
/// and it is logged out, saying why; the new password logs in anywhere.
#[test]
fn passwd_ends_the_resume_token_on_every_instance() {
    let pg = TestPostgres::start();
    let mut s = cluster(&pg, 2, &[]);
    let bob = online_with_list(&[&s[0], &s[1]], "bob");
    let url = s[0].database().unwrap().to_string();
    let out = s[1].admin(
        &[
            "user",
            "passwd",
            "bob",
            "--password-stdin",
            "--database",
            &url,
        ],
        "new-bob-password\n",
    );
    assert!(out.status.success(), "{out:?}");
    // The live session is not closed by the change.
    assert_eq!(bob.users(), ["bob"]);
    assert_eq!(bob.state(), "online");

    s[0].kill9();
    let st = bob.wait_state("logged_out", DEADLINE);
    let why = st["server"]["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("password"), "{st}");
    let (code, doc) = bob.login(&s[1], "bob", "new-bob-password");
    assert_eq!(code, 0, "{doc}");
    assert_eq!(bob.users(), ["bob"]);
}

/// alice logs in on a second instance while the first one's `replaced`
/// event is lost (a rule makes the database drop every bus event): the
/// first instance's lease renewal sees the row is another instance's and
/// closes its session as replaced.
#[test]
fn a_replacement_whose_bus_event_is_lost_is_caught_by_the_lease_renewal() {
    let pg = TestPostgres::start();
    let s = cluster(&pg, 2, &[]);
    let first = TestDaemon::online(&s[0], "alice");
    pg.psql(
        &db_name(&s[0]),
        "CREATE RULE lose_bus_events AS ON INSERT TO session_events DO INSTEAD NOTHING",
    );
    let second = TestDaemon::start(FAST_RECONNECT);
    let (code, doc) = second.login(&s[1], "alice", "alice-password");
    assert_eq!(code, 0, "{doc}");
    first.wait_state("replaced", DEADLINE);
    assert_eq!(second.users(), ["alice"]);
    assert_eq!(second.state(), "online");
}

/// The database stops under two running instances for longer than the
/// presence lease: the sessions stay up, a login and a broadcast are
/// refused with a clear error (no instance dies); once it is back, every
/// instance's LISTEN connection is made again, the users are back in
/// `list`, and broadcasts and logins work across instances.
#[test]
fn the_database_going_down_and_coming_back() {
    let pg = TestPostgres::start();
    let s = cluster(&pg, 2, &[]);
    let alice = TestDaemon::online(&s[0], "alice");
    let bob = TestDaemon::online(&s[1], "bob");
    s[0].add_user("carol", "carol-password");
    wait_users(&alice, &["alice", "bob"]);
    let db = db_name(&s[0]);

    pg.stop();
    let (code, doc) = alice.ctl_json(&["broadcast", "while it is down"]);
    assert_ne!(code, 0, "{doc}");
    let why = doc["error"]["message"].as_str().unwrap_or_default();
    assert!(!why.is_empty(), "{doc}");
    let carol = TestDaemon::start(FAST_RECONNECT);
    let (code, doc) = carol.login(&s[1], "carol", "carol-password");
    assert_ne!(code, 0, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot reach its database") && m.contains("try again")),
        "{doc}"
    );
    // Down past the lease: every presence row has run out when it is back
    // (renewals fail once a third of the lease, so five are > a lease).
    wait_for(
        DEADLINE,
        "five failed lease renewals on each instance",
        || {
            s.iter()
                .all(|x| x.log().matches("cannot renew presence leases").count() >= 5)
                .then_some(())
        },
    );
    assert_eq!(alice.state(), "online");
    assert_eq!(bob.state(), "online");

    pg.start_again();
    wait_for(DEADLINE, "both LISTEN connections made again", || {
        let n = pg.psql(
            &db,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'p2p-server-listen'",
        );
        (n == "2").then_some(())
    });
    broadcast(&alice, "after it is back");
    assert_eq!(
        broadcasts_up_to(&bob, "after it is back"),
        ["after it is back"]
    );
    let (code, doc) = carol.login(&s[1], "carol", "carol-password");
    assert_eq!(code, 0, "{doc}");
    wait_users(&alice, &["alice", "bob", "carol"]);
}
