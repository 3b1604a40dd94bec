//! `--config FILE` and `check-config` (SPEC §12) on the real binary.

use std::path::Path;
use std::process::{Command, Output};

use p2p_testkit::{bin, short_tempdir, TestServer};

fn server(args: &[&str]) -> Output {
    Command::new(bin("p2p-server"))
        .args(args)
        .output()
        .expect("run p2p-server")
}

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("p2p-server.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_config_accepts_a_good_file_and_refuses_a_bad_one_with_exit_2() {
    let dir = short_tempdir();
    let good = write(
        dir.path(),
        "listen = \"127.0.0.1:4400\"\nbroadcast_limit = 5\nbroadcast_window = \"10m\"\n\
         open_registration = true\nrelay_idle = \"90s\"\n",
    );
    let out = server(&["check-config", "--config", &good]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration OK"));

    let bad = write(dir.path(), "max_clients = 10\n");
    let out = server(&["check-config", "--config", &bad]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains(&bad) && err.contains("--max-clients"), "{err}");

    let shared = write(
        dir.path(),
        "listen = \"0.0.0.0:4400\"\nmetrics_listen = \"127.0.0.1:4400\"\n",
    );
    let out = server(&["check-config", "--config", &shared]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("never served on the public port"));

    let missing_key = write(
        dir.path(),
        "tls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n",
    );
    let out = server(&["check-config", "--config", &missing_key]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/cert.pem"));
}

#[test]
fn an_unknown_key_is_refused_listing_the_valid_ones_and_nothing_starts() {
    let dir = short_tempdir();
    let path = write(dir.path(), "listen = \"127.0.0.1:0\"\nbroadcast_limt = 3\n");
    let data = dir.path().join("data");
    let out = server(&["--config", &path, "--data-dir", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("unknown key \"broadcast_limt\""), "{err}");
    assert!(
        err.contains("valid keys:") && err.contains("broadcast_limit, broadcast_ttl"),
        "{err}"
    );
    assert!(!data.exists(), "refused before touching the data dir");
}

/// The file holds a port that is taken; the command line's `--listen`
/// (testkit passes `127.0.0.1:0`) must win, or the server cannot start.
#[test]
fn a_flag_on_the_command_line_beats_the_file() {
    let dir = short_tempdir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let path = write(
        dir.path(),
        &format!("listen = \"{}\"\n", taken.local_addr().unwrap()),
    );
    let server = TestServer::start(&["--config", &path]);
    assert_ne!(server.addr, taken.local_addr().unwrap());
}

/// A temp dir holding a data dir (`data`) with one account, alice.
fn data_dir_with_alice() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = short_tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    p2p_server::users::UserFile::in_dir(&data)
        .add("alice", "correct horse battery")
        .unwrap();
    (dir, data)
}

/// The file applies to the subcommands too: `data_dir` in it is where
/// `user list` looks.
#[test]
fn the_file_applies_to_subcommands() {
    let (dir, data) = data_dir_with_alice();
    let path = write(
        dir.path(),
        &format!("data_dir = \"{}\"\n", data.to_str().unwrap()),
    );
    let out = server(&["user", "list", "--json", "--config", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"alice\""),
        "{}",
        text(&out.stdout)
    );
}

/// Every key in the installed example, uncommented, is valid (the TLS
/// files and the database's CA file it names do not exist here, so those
/// stay out).
#[test]
fn the_example_config_names_only_valid_keys() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../packaging/p2p-server.toml.example"
    );
    let example = std::fs::read_to_string(example).unwrap();
    let keys: Vec<&str> = example
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| l.contains(" = ") && !l.starts_with(' ') && !l.starts_with("tls_"))
        .filter(|l| !l.starts_with("database_ca"))
        .collect();
    assert!(keys.len() > 20, "{keys:?}");
    let dir = short_tempdir();
    let path = write(dir.path(), &keys.join("\n"));
    let out = server(&["check-config", "--config", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `--invitation-ttl` (and its key) is refused outside its bounds with a
/// usage error naming them; the default is five minutes.
#[test]
fn the_invitation_ttl_is_bounded_and_defaults_to_five_minutes() {
    let dir = short_tempdir();
    for args in [&["--invitation-ttl", "5s"][..], &["--invitation-ttl", "2h"]] {
        // Serving flags come before the subcommand.
        let mut all = args.to_vec();
        all.push("check-config");
        let out = server(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("--invitation-ttl") && err.contains("outside 10s to 1h"),
            "{err}"
        );
    }
    let file = write(dir.path(), "invitation_ttl = \"90m\"\n");
    let out = server(&["check-config", "--config", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("outside 10s to 1h"));
    let file = write(dir.path(), "invitation_ttl = \"30s\"\n");
    let out = server(&["check-config", "--config", &file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let help = text(&server(&["--help"]).stdout);
    assert!(
        help.contains("--invitation-ttl") && help.contains("[default: 5m]"),
        "{help}"
    );
}

/// `user list` shows when each account was made in local time (TZ
/// honoured, one format with p2pctl); `--json` keeps RFC 3339 UTC.
#[test]
fn user_list_shows_local_time_and_json_stays_utc() {
    let (_dir, data) = data_dir_with_alice();
    let list = |json: bool| {
        let mut args = vec!["user", "list", "--data-dir", data.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let out = Command::new(bin("p2p-server"))
            .args(&args)
            .env("TZ", "America/New_York")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let human = list(false);
    assert!(human.contains(" EST") || human.contains(" EDT"), "{human}");
    let json = list(true);
    assert!(json.contains("Z\""), "{json}");
}
