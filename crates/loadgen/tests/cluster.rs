//! The `p2p-load` scenarios on two instances sharing one real PostgreSQL
//! (SPEC §9), at small sizes, with checked counts (never times): sessions
//! spread over both instances, the sender on the first.

use p2p_loadgen::scenarios;
use p2p_loadgen::server_proc::ServerOpts;
use p2p_loadgen::servers::Servers;
use p2p_testkit::{wait_for, TestPostgres, DEADLINE};

/// Two instances on a fresh database of `pg`; returns them and the
/// database's name.
fn cluster(pg: &TestPostgres, sessions: usize, broadcasts: u32) -> (Servers, String) {
    let url = pg.fresh_database();
    let db = url.rsplit('/').next().expect("database name").to_string();
    let mut opts = ServerOpts::for_sessions(sessions, broadcasts);
    opts.database = Some(url);
    (Servers::start(&opts, 2).expect("start two instances"), db)
}

/// A broadcast through one instance reaches every session on both, exactly
/// once each (the scenario fails on a missing, wrong or repeated id: a
/// repeat shows as the wrong id in the next round), and every delivery is
/// acknowledged in the database once, under its unique key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_fanout_every_session_gets_every_broadcast_once() {
    let pg = TestPostgres::start();
    let (s, db) = cluster(&pg, 301, 3);
    let r = scenarios::fanout(&s, 300, 2).await.expect("fanout");
    assert_eq!(r.instances, 2);
    assert_eq!(r.broadcasts, 3);
    assert_eq!(r.deliveries, 900);
    // Sessions on both instances: 150 receivers each, the sender on the first.
    let db_figures = r.db.expect("database figures with a database");
    assert_eq!(db_figures.online_per_instance, [151, 150]);
    wait_for(DEADLINE, "900 acknowledgements", || {
        (pg.psql(&db, "SELECT count(*) FROM broadcast_acks") == "900").then_some(())
    });
}

/// Sessions on both instances drop, a broadcast is stored through the
/// first, and every one resuming with its token on its instance gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_catchup_every_resumed_session_gets_the_broadcast() {
    let pg = TestPostgres::start();
    let (s, _) = cluster(&pg, 101, 1);
    let r = scenarios::catchup(&s, 100).await.expect("catchup");
    assert_eq!(r.caught_up, 100);
}
