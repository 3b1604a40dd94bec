//! A big inbox of tiny messages: `p2pctl inbox` reads all of it (pages are
//! sized by what is sent, not by text alone), and entries become read only
//! once the client has them, so a client that dies mid-read loses nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use p2p_testkit::{TestDaemon, DEADLINE, FAST_RECONNECT};
use p2pd::inbox::{Inbox, Incoming, Kind};
use serde_json::Value;

/// Enough one-byte messages that one page of them, counted by text alone,
/// was a response line far over the 16 MiB limit (the figure).
const TINY: usize = 400_000;

/// Several pages' worth of 100-byte messages (several pages by text alone,
/// too: so this checks when pages become read, whatever their size).
const SOME: usize = 50_000;

/// Writes `n` messages of `text` from bob straight into the inbox of a
/// stopped daemon (the real storage code, without a network in between).
fn fill(state_dir: &Path, n: usize, text: &str) {
    let inbox = Inbox::open(state_dir).unwrap();
    let mut id = 0u64;
    while (id as usize) < n {
        let batch: Vec<Incoming> = (0..50_000.min(n - id as usize))
            .map(|_| {
                id += 1;
                Incoming {
                    id,
                    text: text.to_string(),
                    at_ms: 1_795_000_000_000,
                    mid: None,
                }
            })
            .collect();
        inbox.store(Kind::Message, "bob", &batch).unwrap();
    }
}

fn daemon_with(n: usize, text: &str) -> TestDaemon {
    let mut d = TestDaemon::start(FAST_RECONNECT);
    d.stop();
    fill(&d.state_dir(), n, text);
    d.restart();
    assert_eq!(d.status()["unread"], n as u64);
    d
}

fn connect(d: &TestDaemon) -> (UnixStream, BufReader<UnixStream>) {
    let s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut hello = String::new();
    r.read_line(&mut hello).unwrap();
    assert!(hello.contains("\"hello\""), "{hello}");
    (s, r)
}

#[test]
fn a_big_inbox_of_tiny_messages_is_read_whole_and_then_read() {
    let d = daemon_with(TINY, "x");
    let out = d.ctl(&["--json", "inbox"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let msgs = doc["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), TINY);
    let seqs: Vec<u64> = msgs.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order, once each");
    assert!(msgs.iter().all(|m| m["text"] == "x"));
    assert_eq!(d.status()["unread"], 0);
    let (code, again) = d.ctl_json(&["inbox"]);
    assert_eq!(code, 0);
    assert!(again["messages"].as_array().unwrap().is_empty());
}

#[test]
fn empty_messages_come_in_pages_of_the_page_size() {
    // Counted by text, all of them were one page (zero bytes of text).
    let d = daemon_with(100_000, "");
    let (mut w, mut r) = connect(&d);
    w.write_all(b"{\"id\":1,\"cmd\":\"inbox\"}\n").unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(
        line.len() <= p2p_proto::limits::MAX_INBOX_PAGE_BYTES + 1024,
        "{} bytes",
        line.len()
    );
    let page: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(page["result"]["more"], true);
    assert!(!page["result"]["messages"].as_array().unwrap().is_empty());
}

#[test]
fn a_client_that_dies_mid_read_leaves_everything_unread() {
    let d = daemon_with(SOME, &"x".repeat(100));
    // Reads the first page whole, then goes away without asking for more.
    let (mut w, mut r) = connect(&d);
    w.write_all(b"{\"id\":1,\"cmd\":\"inbox\"}\n").unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let page: Value = serde_json::from_str(&line).unwrap();
    let got = page["result"]["messages"].as_array().unwrap().len();
    assert!(got > 0 && page["result"]["more"] == true, "{got}");
    drop((w, r));
    assert_eq!(d.status()["unread"], SOME as u64);

    // Dies in the middle of a page's line.
    let (mut w, mut r) = connect(&d);
    w.write_all(b"{\"id\":1,\"cmd\":\"inbox\"}\n").unwrap();
    let mut some = [0u8; 1000];
    r.read_exact(&mut some).unwrap();
    drop((w, r));
    assert_eq!(d.status()["unread"], SOME as u64);

    // Asking for the next page acknowledges exactly the first one.
    let (mut w, mut r) = connect(&d);
    w.write_all(b"{\"id\":1,\"cmd\":\"inbox\"}\n").unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let page: Value = serde_json::from_str(&line).unwrap();
    let msgs = page["result"]["messages"].as_array().unwrap();
    let last = msgs.last().unwrap()["seq"].as_u64().unwrap();
    w.write_all(format!("{{\"id\":2,\"cmd\":\"inbox\",\"after\":{last}}}\n").as_bytes())
        .unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    drop((w, r));
    assert_eq!(d.status()["unread"], (SOME - msgs.len()) as u64);
}

/// A listing whose output goes nowhere (the reader of its pipe is gone)
/// acknowledges nothing, as JSON as for people: entries become read only
/// once they are written out, not once p2pctl holds them in memory.
#[test]
fn a_listing_that_cannot_be_written_marks_nothing_read() {
    let d = daemon_with(10, "hello");
    for json in [true, false] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = std::process::Command::new(p2p_testkit::bin("p2pctl"));
        cmd.arg("--socket").arg(d.socket());
        if json {
            cmd.arg("--json");
        }
        let status = cmd
            .arg("inbox")
            .stdout(writer)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "json {json}: {status}");
        assert_eq!(d.status()["unread"], 10, "json {json}");
    }
}
