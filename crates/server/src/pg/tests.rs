//! The PostgreSQL stores against a real throwaway PostgreSQL (testkit):
//! the embedded stores' tests again, plus what only a shared database has
//! (several pools as several instances, migrations racing, late commits).

use std::sync::Arc;
use std::time::Duration;

use p2p_proto::Secret;
use p2p_testkit::TestPostgres;

use super::*;
use crate::broadcast::{
    Broadcast, BroadcastHub, BroadcastPolicy, BroadcastStore, Delivery, Purged,
};
use crate::tokens::{MAX_TOKENS_PER_USER, TOKEN_IDLE_EXPIRY_MS};
use crate::ServerError;

async fn migrated(url: &str) -> PgPool {
    let pool = PgPool::new(url).unwrap();
    migrate(&pool).await.unwrap();
    pool
}

fn ids(v: Vec<Broadcast>) -> Vec<u64> {
    v.into_iter().map(|b| b.id).collect()
}

/// Migrations apply once even when three instances start together, and a
/// database from a newer build is refused rather than misread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_across_racing_instances() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let pools: Vec<PgPool> = (0..3).map(|_| PgPool::new(&url).unwrap()).collect();
    let runs = futures::future::join_all(pools.iter().map(migrate)).await;
    let applied: Vec<Vec<i32>> = runs.into_iter().map(Result::unwrap).collect();
    let total: usize = applied.iter().map(Vec::len).sum();
    assert_eq!(total, SCHEMA_VERSION as usize, "{applied:?}");
    assert!(migrate(&pools[0]).await.unwrap().is_empty());

    let db = url.rsplit('/').next().unwrap();
    pg.psql(
        db,
        "INSERT INTO schema_migrations (version, name) VALUES (999, 'future')",
    );
    let refused = migrate(&pools[1]).await.unwrap_err();
    assert!(refused.to_string().contains("newer"), "{refused}");
    assert!(PgPool::new("mysql://x").is_err());
}

/// The embedded store's contract (broadcast/sqlite.rs tests), on
/// PostgreSQL, through the synchronous trait the hub calls.
#[test]
fn broadcast_store_keeps_the_embedded_contract() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let open = || {
        let pool = rt.block_on(migrated(&url));
        let _guard = rt.enter();
        PgBroadcasts::new(pool)
    };
    let s = open();
    let a = s.insert("alice", "one", 0, 1_000).unwrap();
    let b = s.insert("bob", "two", 10, 2_000).unwrap();
    let c = s.insert("alice", "three", 20, 3_000).unwrap();
    assert!(a < b && b < c);
    assert_eq!(ids(s.pending("carol", 0, 500, 10).unwrap()), [a, b, c]);
    assert_eq!(
        ids(s.pending("alice", 0, 500, 10).unwrap()),
        [b],
        "no copy to the sender"
    );
    assert_eq!(ids(s.pending("carol", a, 500, 10).unwrap()), [b, c]);
    assert_eq!(
        ids(s.pending("carol", 0, 1_500, 10).unwrap()),
        [b, c],
        "expired never delivered"
    );
    assert_eq!(ids(s.pending("carol", 0, 500, 1).unwrap()), [a]);
    s.ack(&[("carol".into(), a)]).unwrap();
    // a: carol has it; b: carol never acknowledged it.
    assert_eq!(
        s.purge(2_000).unwrap(),
        Purged {
            deleted: 2,
            undelivered: 1
        }
    );
    assert_eq!(ids(s.pending("carol", 0, 0, 10).unwrap()), [c]);

    // Acknowledgements only rise, and survive a new pool (a restart).
    let d = s.insert("x", "four", 30, 10_000).unwrap();
    s.ack(&[("carol".into(), d), ("dave".into(), c)]).unwrap();
    s.ack(&[("carol".into(), c)]).unwrap();
    drop(s);
    let s = open();
    assert_eq!(
        (s.acked("carol").unwrap(), s.acked("dave").unwrap()),
        (d, c)
    );
    assert_eq!(s.acked("nobody").unwrap(), 0);
    assert!(s.pending("carol", 0, 0, 10).unwrap().is_empty());
}

/// Any text the protocol carries is stored as it came, U+0000 and control
/// characters included, as the embedded store keeps it (a TEXT column
/// refused U+0000: the sender was told the broadcast could not be stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_text_with_nul_is_stored_as_it_came() {
    let pg = TestPostgres::start();
    let pool = migrated(&pg.fresh_database()).await;
    let s = PgBroadcasts::new(pool);
    let text = "a\u{0}b \u{1b}]52;c;\u{7} \u{202e} é\u{0}";
    let id = s.insert_async("alice", text, 0, 1_000).await.unwrap();
    let got = s.pending_async("carol", 0, 0, 10).await.unwrap();
    assert_eq!((got[0].id, got[0].text.as_str()), (id, text));
    let fed = s.after(0, 0, 10).await.unwrap();
    assert_eq!(fed[0].text, text);
}

/// An acknowledgement is a row per (recipient, broadcast): repeating it
/// through another instance changes nothing, and a broadcast whose insert
/// committed after a later id was acknowledged is still pending for that
/// recipient, where a "newest seen" mark would have hidden it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_are_per_recipient_rows_and_idempotent() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let one = PgBroadcasts::new(migrated(&url).await);
    let two = PgBroadcasts::new(migrated(&url).await);

    // Another instance's insert, still uncommitted, holds the lower id.
    let (mut slow, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tx = slow.transaction().await.unwrap();
    let early: i64 = tx
        .query_one(
            "INSERT INTO broadcasts (sender, text, sent_ms, expires_ms)
             VALUES ('alice', 'slow', 0, 9000000000000) RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let late = one
        .insert_async("carol", "fast", 0, 9_000_000_000_000)
        .await
        .unwrap();
    assert!(late > early as u64);
    two.ack_async(&[("bob".into(), late)]).await.unwrap();
    // One wave may name a user twice; it still writes one row each.
    one.ack_async(&[
        ("bob".into(), late),
        ("eve".into(), late),
        ("bob".into(), late),
    ])
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let pending = one.pending_async("bob", 0, 0, 10).await.unwrap();
    assert_eq!(ids(pending), [early as u64], "the late commit is not lost");
    let db = url.rsplit('/').next().unwrap();
    assert_eq!(
        pg.psql(
            db,
            "SELECT COUNT(*) FROM broadcast_acks WHERE recipient = 'bob'"
        ),
        "1",
        "acknowledged twice, stored once"
    );
    assert_eq!(
        ids(one.pending_async("eve", 0, 0, 10).await.unwrap()),
        [early as u64]
    );
}

/// The real hub and delivery invariant over PostgreSQL (the embedded
/// `acks_queued_at_shutdown_survive_a_restart`): acknowledgements queued
/// at shutdown are written, nothing is redelivered through a new pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_over_postgres_delivers_and_keeps_acks() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let policy = BroadcastPolicy {
        ttl: Duration::from_secs(1800),
        limit: 100,
        window: Duration::from_secs(3600),
    };
    let h = BroadcastHub::start(Arc::new(PgBroadcasts::new(migrated(&url).await)), policy);
    let mut last = 0;
    for i in 0..3 {
        last = h.publish("alice", format!("m{i}")).await.unwrap().0;
    }
    let mut bob = Delivery::start(h.clone(), "bob").await.unwrap();
    let got = bob.backlog().await.unwrap().unwrap();
    assert_eq!(got.len(), 3);
    bob.ack(last);
    h.close().await;
    drop((bob, h));

    let store = PgBroadcasts::new(migrated(&url).await);
    assert_eq!(store.acked_async("bob").await.unwrap(), last);
    let h = BroadcastHub::start(Arc::new(store), policy);
    let mut bob = Delivery::start(h.clone(), "bob").await.unwrap();
    assert!(
        bob.backlog().await.unwrap().is_none(),
        "nothing redelivered"
    );
    let mut carol = Delivery::start(h, "carol").await.unwrap();
    assert_eq!(carol.backlog().await.unwrap().unwrap().len(), 3);
}

/// Accounts behave as users.csv does: add refuses a duplicate, passwd and
/// remove refuse an unknown name, hashes are argon2id of the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_keep_the_users_csv_semantics() {
    let pg = TestPostgres::start();
    let accounts = PgAccounts::new(migrated(&pg.fresh_database()).await);
    accounts.add("alice", "password-1").await.unwrap();
    assert!(matches!(
        accounts.add("alice", "password-2").await,
        Err(ServerError::UserExists(_))
    ));
    assert!(matches!(
        accounts.add_hashed("alice", "$argon2id$x".into()).await,
        Err(ServerError::UserExists(_))
    ));
    assert!(matches!(
        accounts.add("bad name", "password-1").await,
        Err(ServerError::Name(_))
    ));
    assert!(matches!(
        accounts.add("bob", "short").await,
        Err(ServerError::Name(_))
    ));
    let phc = accounts.hash_of("alice").await.unwrap().unwrap();
    assert!(crate::users::verify_password("password-1", &phc));
    accounts.passwd("alice", "password-3").await.unwrap();
    let phc = accounts.hash_of("alice").await.unwrap().unwrap();
    assert!(crate::users::verify_password("password-3", &phc));
    assert!(matches!(
        accounts.passwd("nobody", "password-3").await,
        Err(ServerError::NoSuchUser(_))
    ));
    accounts.add("bob", "password-2").await.unwrap();
    let list = accounts.list().await.unwrap();
    assert_eq!(
        list.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert!(list[0].created_at.ends_with('Z'), "{}", list[0].created_at);
    assert_eq!(accounts.count().await.unwrap(), 2);
    accounts.remove("bob").await.unwrap();
    assert!(matches!(
        accounts.remove("bob").await,
        Err(ServerError::NoSuchUser(_))
    ));
    assert_eq!(accounts.hash_of("bob").await.unwrap(), None);
}

/// tokens.rs's tests on PostgreSQL, plus: a token issued through one
/// instance works through another, and removing the account removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_the_embedded_semantics_on_every_instance() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let pool = migrated(&url).await;
    let accounts = PgAccounts::new(pool.clone());
    for name in ["alice", "bob"] {
        accounts
            .add_hashed(name, format!("$argon2id$fake-{name}"))
            .await
            .unwrap();
    }
    let s = PgTokens::new(pool);
    let other = PgTokens::new(migrated(&url).await);
    let t = s.issue("alice", "$hash1", 0).await.unwrap();
    assert!(other.check("alice", &t, "$hash1", 1).await.unwrap());
    assert!(!s.check("bob", &t, "$hash1", 1).await.unwrap());
    assert!(
        !s.check("alice", &t, "$hash2", 1).await.unwrap(),
        "password changed"
    );
    assert!(!s
        .check("alice", &Secret::new("forged"), "$hash1", 1)
        .await
        .unwrap());
    assert!(!s
        .check("alice", &t, "$hash1", TOKEN_IDLE_EXPIRY_MS + 1)
        .await
        .unwrap());
    other.revoke(&t).await.unwrap();
    assert!(!s.check("alice", &t, "$hash1", 1).await.unwrap());

    // Capped per user, the oldest evicted.
    let first = s.issue("alice", "$h", 0).await.unwrap();
    for i in 0..MAX_TOKENS_PER_USER {
        s.issue("alice", "$h", 10 + i).await.unwrap();
    }
    assert!(
        !s.check("alice", &first, "$h", 100).await.unwrap(),
        "oldest evicted"
    );
    // Only digests are stored.
    let db = url.rsplit('/').next().unwrap();
    let stored = pg.psql(
        db,
        "SELECT string_agg(encode(digest, 'hex'), ',') FROM resume_tokens",
    );
    let bob = s.issue("bob", "$h", 0).await.unwrap();
    assert!(!stored.contains(first.expose()));
    accounts.remove("bob").await.unwrap();
    assert!(
        !s.check("bob", &bob, "$h", 1).await.unwrap(),
        "account gone"
    );
}

/// Three instances starting together on an empty database end up with
/// one certificate (so one pin), and it stays the same afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_instances_share_one_tls_identity() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let mut pools = Vec::new();
    for _ in 0..3 {
        pools.push(migrated(&url).await);
    }
    let got = futures::future::join_all(pools.iter().map(shared_identity)).await;
    let certs: Vec<String> = got.into_iter().map(|r| r.unwrap().cert_pem).collect();
    assert!(certs[0].starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(certs.iter().all(|c| *c == certs[0]), "one identity");
    let again = shared_identity(&pools[2]).await.unwrap();
    assert_eq!(again.cert_pem, certs[0]);
    assert!(again.key_pem.expose().contains("PRIVATE KEY"));
}
