//! The backend switch (`P2P_TEST_BACKEND`): `TestServer::start` serves from
//! what it says, `start_embedded` always from the data dir, and a restart,
//! a sibling and an impostor keep, share and leave the database as their
//! tests expect. The parent test runs the checks again in a child process
//! with `P2P_TEST_BACKEND=postgres`, so both backends are covered by one
//! `cargo test`.

use p2p_testkit::{backend, Backend, TestServer, BACKEND_ENV};

#[test]
fn servers_serve_from_the_chosen_backend() {
    let mut server = TestServer::start(&[]);
    let on_pg = backend() == Backend::Postgres;
    assert_eq!(
        server.database().is_some(),
        on_pg,
        "{:?}",
        server.database()
    );
    server.add_user("alice", "alice-password");
    assert!(server.has_user("alice") && !server.has_user("bob"));
    // A cheap precomputed hash, as the load tests register their crowds.
    let phc = "$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHQ$Gc8Ty3jF3hYfFqQ8kO4ZkA";
    server.add_users_hashed(&[("load0".into(), phc.into()), ("load1".into(), phc.into())]);
    assert!(server.has_user("load0") && server.has_user("load1"));
    // users.csv is the embedded store's; the database's accounts live there.
    assert_eq!(server.data_dir().join("users.csv").exists(), !on_pg);

    let db = server.database().map(str::to_string);
    server.restart();
    assert_eq!(
        server.database(),
        db.as_deref(),
        "a restart keeps its database"
    );
    assert!(server.has_user("alice"));

    let sibling = server.start_sibling(&[]);
    assert_eq!(sibling.database(), db.as_deref(), "a sibling shares it");
    assert_eq!(sibling.fingerprint, server.fingerprint);
    assert!(sibling.has_user("alice"));

    let impostor = server.replace_with_impostor();
    assert_ne!(impostor.fingerprint, sibling.fingerprint);
    assert!(
        !impostor.has_user("alice"),
        "an impostor has other accounts"
    );
    if on_pg {
        assert_ne!(impostor.database(), db.as_deref());
    }

    let embedded = TestServer::start_embedded(&[]);
    assert_eq!(embedded.database(), None);
    embedded.add_user("carol", "carol-password");
    assert!(embedded.data_dir().join("users.csv").exists());
}

#[test]
fn the_postgres_backend_passes_the_same_checks() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "servers_serve_from_the_chosen_backend"])
        .env(BACKEND_ENV, "postgres")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "{text}");
}

#[test]
fn an_unknown_backend_is_refused() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "servers_serve_from_the_chosen_backend"])
        .env(BACKEND_ENV, "postgress")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("expected embedded or postgres"), "{text}");
}
