//! Under journald, MESSAGE says what happened and why ("login refused for
//! alice: wrong user name or password", "retrying in 1s: ..."), with the
//! fields as extras. The journal is a datagram socket this test binds,
//! named to p2pd by `P2P_JOURNAL_SOCKET`; p2pd's stderr is a file whose
//! dev:inode is given as `JOURNAL_STREAM`, as systemd would.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use p2p_testkit::{bin, short_tempdir, wait_for, TestServer, DEADLINE, FAST_RECONNECT};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One journal entry's fields (native protocol: `K=V\n`, or `K\n` +
/// u64 LE length + value + `\n`).
fn parse(mut d: &[u8]) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').expect("field ends");
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let (k, v) = (&line[..eq], &line[eq + 1..]);
            fields.insert(
                String::from_utf8_lossy(k).into(),
                String::from_utf8_lossy(v).into(),
            );
            d = &d[nl + 1..];
        } else {
            let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let v = &d[nl + 9..nl + 9 + len];
            fields.insert(
                String::from_utf8_lossy(line).into(),
                String::from_utf8_lossy(v).into(),
            );
            d = &d[nl + 9 + len + 1..];
        }
    }
    fields
}

/// Reads entries until one's MESSAGE satisfies `want`.
fn entry(
    journal: &UnixDatagram,
    what: &str,
    want: impl Fn(&str) -> bool,
) -> HashMap<String, String> {
    let mut buf = vec![0u8; 1 << 17];
    wait_for(DEADLINE, what, || {
        let n = journal.recv(&mut buf).ok()?;
        let fields = parse(&buf[..n]);
        want(fields.get("MESSAGE")?).then_some(fields)
    })
}

fn ctl(home: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(bin("p2pctl"))
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home)
        .arg("--socket")
        .arg(home.join("p2pd.sock"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn journal_messages_say_what_happened_and_why() {
    let mut server = TestServer::start(&[]);
    server.add_user("alice", "alice-password");
    let home = short_tempdir();
    let h = home.path();
    let journal = UnixDatagram::bind(h.join("journal.sock")).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stderr = std::fs::File::create(h.join("stderr")).unwrap();
    let meta = stderr.metadata().unwrap();
    std::fs::create_dir_all(h.join("c/p2p")).unwrap();
    std::fs::write(h.join("c/p2p/p2pd.toml"), FAST_RECONNECT).unwrap();
    let _d = Daemon(
        Command::new(bin("p2pd"))
            .env("HOME", h)
            .env("XDG_CONFIG_HOME", h.join("c"))
            .env("XDG_RUNTIME_DIR", h)
            .env_remove("RUST_LOG")
            .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
            .env("P2P_JOURNAL_SOCKET", h.join("journal.sock"))
            .arg("--state-dir")
            .arg(h.join("state"))
            .arg("--socket")
            .arg(h.join("p2pd.sock"))
            .args(["--peer-listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start p2pd"),
    );
    wait_for(DEADLINE, "p2pd control socket", || {
        h.join("p2pd.sock").exists().then_some(())
    });

    let login = [
        "login",
        "--server",
        &server.address(),
        "--user",
        "alice",
        "--password-stdin",
        "--trust-on-first-use",
    ];
    let out = ctl(h, &login, "not-her-password\n");
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let refused = entry(&journal, "the login refusal", |m| {
        m.starts_with("login refused")
    });
    assert!(
        refused["MESSAGE"].starts_with("login refused for alice: wrong user name or password"),
        "{refused:?}"
    );
    assert_eq!(refused["PRIORITY"], "4", "warning: {refused:?}");
    assert_eq!(
        refused["F_USER"], "alice",
        "fields stay extras: {refused:?}"
    );
    assert!(
        refused["F_REASON"].contains("wrong user name or password"),
        "{refused:?}"
    );

    let out = ctl(h, &login, "alice-password\n");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    server.stop();
    let retry = entry(&journal, "a retry", |m| m.starts_with("retrying in "));
    let msg = &retry["MESSAGE"];
    let (_, why) = msg.split_once(": ").expect("retrying in T: WHY");
    assert!(!why.is_empty() && retry["F_REASON"] == why, "{retry:?}");

    // The journal got them, not stderr.
    let text = std::fs::read_to_string(h.join("stderr")).unwrap();
    assert!(!text.contains("login refused"), "{text}");
}
