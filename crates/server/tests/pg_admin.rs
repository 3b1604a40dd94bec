//! `p2p-server user add|remove|passwd|list|import --database URL` (SPEC §9)
//! run as the real binary against a real throwaway PostgreSQL.

use std::path::Path;
use std::process::Output;

use argon2::{Argon2, PasswordVerifier};
use p2p_server::pg::{PgAccounts, PgPool, PgTokens};
use p2p_testkit::{parse_json, TestPostgres};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `p2p-server` with `args` (data dir `dir`), `stdin` piped in.
fn server(dir: &Path, args: &[&str], stdin: &str) -> Output {
    p2p_testkit::admin_in(dir, args, stdin)
}

fn ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn listed(dir: &Path, url: &str) -> Vec<String> {
    let out = server(dir, &["user", "list", "--json", "--database", url], "");
    ok(&out);
    let doc = parse_json(&out);
    doc["users"]
        .as_array()
        .expect("a users list")
        .iter()
        .map(|u| u["user"].as_str().unwrap().to_string())
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn verifies(password: &str, phc: &str) -> bool {
    let hash = argon2::PasswordHash::new(phc).unwrap();
    Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok()
}

/// add, list, passwd, remove against the database; a resume token issued
/// before `passwd` no longer checks, and `remove` takes the tokens along.
#[test]
fn add_list_passwd_remove_round_trip_and_passwd_ends_tokens() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let out = server(
        d,
        &[
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--database",
            &url,
        ],
        "alice-password-1\n",
    );
    ok(&out);
    assert!(text(&out.stdout).contains("added user alice"));
    ok(&server(
        d,
        &["user", "add", "bob", "--password-stdin", "--database", &url],
        "bob-password-1\n",
    ));
    assert_eq!(listed(d, &url), ["alice", "bob"]);
    // Nothing went to the embedded file.
    assert!(!d.join("users.csv").exists());

    let out = server(
        d,
        &[
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--database",
            &url,
        ],
        "another-password\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("already exists"), "{out:?}");
    let out = server(
        d,
        &[
            "user",
            "add",
            "Bad Name",
            "--password-stdin",
            "--database",
            &url,
        ],
        "whatever-password\n",
    );
    assert_ne!(out.status.code(), Some(0));

    let rt = runtime();
    let pool = rt.block_on(async { PgPool::new(&url) }).unwrap();
    let accounts = PgAccounts::new(pool.clone());
    let tokens = PgTokens::new(pool);
    let old = rt.block_on(accounts.hash_of("alice")).unwrap().unwrap();
    assert!(verifies("alice-password-1", &old));
    let now = p2p_proto::time::now_ms();
    let token = rt.block_on(tokens.issue("alice", &old, now)).unwrap();
    assert!(rt
        .block_on(tokens.check("alice", &token, &old, now))
        .unwrap());

    let out = server(
        d,
        &[
            "user",
            "passwd",
            "alice",
            "--password-stdin",
            "--database",
            &url,
        ],
        "alice-password-2\n",
    );
    ok(&out);
    assert!(text(&out.stdout).contains("password changed for alice"));
    let new = rt.block_on(accounts.hash_of("alice")).unwrap().unwrap();
    assert!(verifies("alice-password-2", &new));
    assert!(!rt
        .block_on(tokens.check("alice", &token, &new, now))
        .unwrap());

    let bob = rt.block_on(accounts.hash_of("bob")).unwrap().unwrap();
    rt.block_on(tokens.issue("bob", &bob, now)).unwrap();
    let out = server(d, &["user", "remove", "bob", "--database", &url], "");
    ok(&out);
    assert!(text(&out.stdout).contains("removed user bob"));
    assert_eq!(listed(d, &url), ["alice"]);
    let left = pg.psql(
        url.rsplit('/').next().unwrap(),
        "SELECT COUNT(*) FROM resume_tokens WHERE username = 'bob'",
    );
    assert_eq!(left.trim(), "0");
    let out = server(d, &["user", "remove", "bob", "--database", &url], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no such user"), "{out:?}");
}

/// An embedded install's users.csv, made by the embedded `user add`, moves
/// over with its hashes: the original passwords verify. A clash or a bad
/// line refuses the whole file and changes nothing.
#[test]
fn import_moves_an_embedded_install_and_refuses_clashes_and_bad_lines() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let embedded = tempfile::tempdir().unwrap();
    let e = embedded.path();
    for (name, pw) in [("carol", "carol-password"), ("dave", "dave-password")] {
        ok(&server(
            e,
            &["user", "add", name, "--password-stdin"],
            &format!("{pw}\n"),
        ));
    }
    let csv = e.join("users.csv");
    let csv_s = csv.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // A clash with an account already in the database: nothing imported.
    ok(&server(
        d,
        &[
            "user",
            "add",
            "dave",
            "--password-stdin",
            "--database",
            &url,
        ],
        "dave-other-password\n",
    ));
    let out = server(d, &["user", "import", csv_s, "--database", &url], "");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(
        err.contains("dave") && err.contains("nothing imported"),
        "{err}"
    );
    assert_eq!(listed(d, &url), ["dave"]);
    ok(&server(
        d,
        &["user", "remove", "dave", "--database", &url],
        "",
    ));

    // A bad line: refused by number, nothing imported.
    let good = std::fs::read_to_string(&csv).unwrap();
    let bad = d.join("bad.csv");
    std::fs::write(
        &bad,
        format!("{good}erin,not-a-hash,2026-01-01T00:00:00Z\n"),
    )
    .unwrap();
    let out = server(
        d,
        &["user", "import", bad.to_str().unwrap(), "--database", &url],
        "",
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("line 4"), "{out:?}");
    assert!(listed(d, &url).is_empty());

    // Without a database there is nothing to import into.
    let out = server(d, &["user", "import", csv_s], "");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("--database"));

    let out = server(
        d,
        &["user", "import", csv_s, "--json", "--database", &url],
        "",
    );
    ok(&out);
    assert_eq!(parse_json(&out)["imported"], 2);
    assert_eq!(listed(d, &url), ["carol", "dave"]);
    let rt = runtime();
    let accounts = PgAccounts::new(rt.block_on(async { PgPool::new(&url) }).unwrap());
    let carol = rt.block_on(accounts.hash_of("carol")).unwrap().unwrap();
    assert!(verifies("carol-password", &carol));
    let dave = rt.block_on(accounts.hash_of("dave")).unwrap().unwrap();
    assert!(verifies("dave-password", &dave));
    // A wrong password: the server's reason, not the password.
    let (head, tail) = url.split_once('@').unwrap();
    let wrong = format!("{}:wrong-pw-4242@{tail}", head.rsplit_once(':').unwrap().0);
    let out = server(d, &["user", "list", "--database", &wrong], "");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wrong-pw-4242"), "{err}");

    // The creation times came along.
    let out = server(d, &["user", "list", "--json", "--database", &url], "");
    let embedded_list = server(e, &["user", "list", "--json"], "");
    assert_eq!(parse_json(&out), parse_json(&embedded_list));
}

/// A database that cannot be reached: one clear line naming the URL
/// without its password, exit 1, no panic; a malformed URL is usage (2).
#[test]
fn an_unreachable_database_is_one_clear_line_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://p2p:hunter2secret@127.0.0.1:1/p2p";
    let out = server(d, &["user", "list", "--database", url], "");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(!err.contains("hunter2secret"), "{err}");
    assert!(err.contains("postgres://p2p:***@127.0.0.1:1/p2p"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // The same from `database =` in the config file.
    let config = d.join("server.toml");
    std::fs::write(&config, format!("database = \"{url}\"\n")).unwrap();
    let out = server(
        d,
        &["user", "list", "--config", config.to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("postgres://p2p:***@127.0.0.1:1/p2p"), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");

    let out = server(d, &["user", "list", "--database", "mysql://x:pw@h/d"], "");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!text(&out.stderr).contains("pw@"), "{out:?}");

    // Serving from a database that cannot be reached stops at start, with
    // one line that names no password.
    let out = server(d, &["--database", url, "--listen", "127.0.0.1:0"], "");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(
        !err.contains("hunter2secret") && !err.contains("panicked"),
        "{err}"
    );
}
