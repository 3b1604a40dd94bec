//! TLS to PostgreSQL (`--database-ca`): with it every connection an
//! instance makes to the database (the pool and the LISTEN connection) is
//! TLS verified against that CA; a wrong CA and `sslmode=require` without
//! one are refused, never downgraded. Real PostgreSQL with `ssl = on`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use p2p_testkit::{admin_in, wait_for, TestDaemon, TestPostgres, TestServer, DEADLINE};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A CA certificate (PEM) and, signed by it, a certificate and key for
/// 127.0.0.1.
fn ca_and_server() -> (String, String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// Turns TLS on in the running `pg` with a fresh CA; returns the CA file.
fn enable_tls(pg: &TestPostgres, dir: &Path) -> PathBuf {
    let (ca, cert, key) = ca_and_server();
    let owner = std::fs::metadata(pg.dir()).unwrap();
    for (name, body, mode) in [("server.crt", &cert, 0o644), ("server.key", &key, 0o600)] {
        let path = pg.dir().join(name);
        std::fs::write(&path, body).unwrap();
        std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
    }
    let at = |name: &str| pg.dir().join(name).display().to_string();
    // ALTER SYSTEM may not run inside a transaction: one statement per call.
    pg.psql(
        "postgres",
        &format!("ALTER SYSTEM SET ssl_cert_file = '{}'", at("server.crt")),
    );
    pg.psql(
        "postgres",
        &format!("ALTER SYSTEM SET ssl_key_file = '{}'", at("server.key")),
    );
    pg.psql("postgres", "ALTER SYSTEM SET ssl = on");
    pg.psql("postgres", "SELECT pg_reload_conf()");
    wait_for(DEADLINE, "ssl = on after the reload", || {
        (pg.psql("postgres", "SHOW ssl").trim() == "on").then_some(())
    });
    let file = dir.join("db-ca.pem");
    std::fs::write(&file, ca).unwrap();
    file
}

fn user_list(dir: &Path, url: &str, ca: Option<&Path>) -> Output {
    let mut args = vec!["user", "list", "--database", url];
    let ca = ca.map(|c| c.display().to_string());
    if let Some(c) = &ca {
        args.extend(["--database-ca", c]);
    }
    admin_in(dir, &args, "")
}

#[test]
fn an_instance_talks_to_the_database_over_verified_tls_only() {
    let pg = TestPostgres::start();
    let tmp = tempfile::tempdir().unwrap();
    let ca = enable_tls(&pg, tmp.path());
    let url = format!("{}?sslmode=require", pg.fresh_database());
    let db = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let ca_arg = ca.display().to_string();

    // A URL asking for TLS without a CA to verify it: refused, not downgraded.
    let out = user_list(tmp.path(), &url, None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("--database-ca"), "{out:?}");

    // Another CA: the database's certificate does not verify.
    let other = tmp.path().join("other-ca.pem");
    std::fs::write(&other, ca_and_server().0).unwrap();
    let out = user_list(tmp.path(), &url, Some(&other));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!text(&out.stderr).contains("panicked"), "{out:?}");

    // The right CA: the admin commands and a serving instance work.
    let server = TestServer::start(&[
        "--database",
        &url,
        "--database-ca",
        &ca_arg,
        "--presence-lease",
        "3s",
    ]);
    let out = server.admin(
        &[
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--database",
            &url,
            "--database-ca",
            &ca_arg,
        ],
        "alice-password\n",
    );
    assert!(out.status.success(), "{out:?}");
    let alice = TestDaemon::start(p2p_testkit::FAST_RECONNECT);
    let (code, doc) = alice.login(&server, "alice", "alice-password");
    assert_eq!(code, 0, "{doc}");
    let (code, doc) = alice.ctl_json(&["list"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["users"][0]["user"], "alice", "{doc}");
    // Every connection of the instance is TLS: the pool's and LISTEN's.
    let count = |ssl: bool| {
        pg.psql(
            &db,
            &format!(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.application_name LIKE 'p2p-server%' AND s.ssl = {ssl}"
            ),
        )
        .trim()
        .parse::<u32>()
        .unwrap()
    };
    wait_for(DEADLINE, "the LISTEN connection", || {
        let listening = pg.psql(
            &db,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'p2p-server-listen'",
        );
        (listening.trim() == "1").then_some(())
    });
    assert!(count(true) >= 2, "pool and LISTEN over TLS");
    assert_eq!(count(false), 0, "no plain connection");
}
