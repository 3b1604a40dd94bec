//! Terminal safety (SPEC §11) for every field p2pctl prints, not only the
//! ones a real peer can fill today: a compromised server can hand p2pd any
//! name, address or error text, and p2pd relays it. Here a scripted control
//! socket stands in for such a daemon and puts hostile text in every string
//! of every result, event and error; the real p2pctl must print none of it
//! raw. (`terminal_safety.rs` does the same end to end with real processes
//! for the text real peers and broadcasters control.)

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use p2p_proto::limits::CTL_VERSION;
use p2p_testkit::{bin, short_tempdir};
use serde_json::{json, Value};

/// Hostile text for every field: window title, C1 CSI, bidi override, CR,
/// BS, DEL, and a line break with a tab (which must not survive in a name).
const E: &str = "\u{1b}]0;evil-title\u{7}\u{9b}2J\u{202e}\r\u{8}\u{7f}\n\tEND";

/// The document a hostile daemon answers `cmd` with (`Err` for an error).
fn answer(cmd: &Value) -> Result<Value, Value> {
    let session = json!({"peer": E, "since": E, "initiator": false});
    let entry = json!({"kind": "message", "from": E, "text": format!("{E}\u{0}"), "id": 1, "at": E, "seq": 1});
    Ok(match cmd["cmd"].as_str().unwrap_or("") {
        "status" => json!({
            "server": {"state": "connecting", "address": E, "user": E, "attempt": 3,
                       "next_retry_ms": 1000, "since": E, "last_error": E},
            "peer_listen": E, "sessions": 1, "pending": 1, "unread": 1, "public_key": E,
        }),
        "list" => json!({"users": [{"user": E, "since": E}]}),
        "requests" => json!({"requests": [{"from": E, "expires_at": E}]}),
        "sessions" => json!({"sessions": [session]}),
        "connect" => json!({"connected": session}),
        "accept" => json!({"peer": E, "accepted": true, "session": session}),
        "reject" => return Err(json!({"code": "no_request", "message": E})),
        "disconnect" => json!({"disconnected": E}),
        "send" => json!({"sent": [{"to": E, "id": 1}]}),
        "broadcast" => json!({"broadcast": {"id": 1, "expires_at": E}}),
        "login" => json!({"user": E, "server": E, "fingerprint": E}),
        "logout" => json!({"user": E}),
        // One page, then the empty page that ends the listing.
        "inbox" if cmd["after"].is_null() => json!({"messages": [entry]}),
        "inbox" => json!({"messages": []}),
        "watch" => json!({"watching": true}),
        _ => return Err(json!({"code": E, "message": E})),
    })
}

/// Every kind of event, each field hostile, and one of a kind p2pctl does
/// not know.
fn events() -> Vec<Value> {
    let entry = json!({"from": E, "text": format!("{E}\u{0}"), "id": 1, "at": E, "seq": 2});
    let mut message = entry.clone();
    message["event"] = json!("message");
    message["kind"] = json!("message");
    let mut broadcast = entry;
    broadcast["event"] = json!("broadcast");
    broadcast["kind"] = json!("broadcast");
    vec![
        json!({"event": "server", "state": E, "attempt": 1, "address": E, "user": E,
               "next_retry_ms": null, "last_error": E}),
        json!({"event": "request", "from": E, "expires_at": E}),
        json!({"event": "connected", "peer": E, "since": E, "initiator": true}),
        json!({"event": "rejected", "peer": E, "reason": E}),
        message,
        broadcast,
        json!({"event": "key_changed", "peer": E, "old_key": E, "new_key": E}),
        json!({"event": E, "peer": E, "\u{9b}": "\u{202e}"}),
        json!({"event": "disconnected", "peer": E, "reason": E}),
    ]
}

/// Serves one control connection like a hostile p2pd; after `watch` or
/// `inbox --follow`, writes every event and hangs up.
fn serve(stream: UnixStream, protocol: u32) {
    let mut w = stream.try_clone().unwrap();
    let greeting = json!({"hello": {"protocol": protocol, "daemon": E}});
    if writeln!(w, "{greeting}").is_err() {
        return;
    }
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let req: Value = serde_json::from_str(&line).unwrap();
        let resp = match answer(&req) {
            Ok(result) => json!({"id": req["id"], "result": result}),
            Err(error) => json!({"id": req["id"], "error": error}),
        };
        if writeln!(w, "{resp}").is_err() {
            return;
        }
        if req["cmd"] == "watch" || req["follow"] == true {
            for ev in events() {
                let _ = writeln!(w, "{ev}");
            }
            return;
        }
    }
}

/// A hostile daemon on a socket in `dir`, speaking control `protocol`.
fn hostile_daemon(dir: &Path, protocol: u32) -> std::path::PathBuf {
    let path = dir.join(format!("evil-{protocol}.sock"));
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || serve(conn, protocol));
        }
    });
    path
}

/// Runs p2pctl with `stdin`; for `chat` stdin stays open until it exits,
/// so it ends by the hostile daemon's `disconnected`, after printing what
/// it got.
fn run(socket: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(bin("p2pctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin.as_bytes());
    let input = (args.first() == Some(&"chat")).then_some(input);
    let (out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let errs = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let stdout =
        p2p_testkit::read_to_end_within(out, p2p_testkit::DEADLINE, "p2pctl to finish its output");
    let stderr = errs.join().unwrap();
    let status = child.wait().unwrap();
    drop(input);
    Output {
        status,
        stdout,
        stderr,
    }
}

/// What in `text` a terminal would act on rather than print, and whether
/// a name's line break got through (a line starting with its tab).
fn leaks(text: &str) -> Vec<String> {
    let mut found: Vec<String> = text
        .chars()
        .filter(|c| {
            matches!(c,
                '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .map(|c| format!("raw {c:?}"))
        .collect();
    if text.lines().any(|l| l.starts_with('\t')) {
        found.push("a raw line break in a one-line field".into());
    }
    found
}

#[test]
fn every_field_of_every_command_is_escaped() {
    let dir = short_tempdir();
    let socket = hostile_daemon(dir.path(), CTL_VERSION);
    let commands: &[(&[&str], &str)] = &[
        (&["status"], ""),
        (&["list"], ""),
        (&["requests"], ""),
        (&["sessions"], ""),
        (&["connect", "bob"], ""),
        (&["connect", "bob", "--no-wait"], ""),
        (&["accept", "bob"], ""),
        (&["reject", "bob"], ""),
        (&["disconnect", "bob"], ""),
        (&["send", "bob", "hi"], ""),
        (&["send", "bob", "-"], "one\ntwo\n"),
        (&["broadcast", "hi"], ""),
        (
            &[
                "login",
                "--server",
                "localhost",
                "--user",
                "bob",
                "--password-stdin",
                "--trust-on-first-use",
            ],
            "password\n",
        ),
        (&["logout"], ""),
        (&["inbox"], ""),
        (&["inbox", "--all"], ""),
        (&["inbox", "--follow"], ""),
        (&["watch"], ""),
        (&["chat", E], ""),
    ];
    let mut problems = Vec::new();
    for (args, stdin) in commands {
        let out = run(&socket, args, stdin);
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            let found = leaks(&text);
            if !found.is_empty() {
                problems.push(format!("{args:?} {stream}: {found:?} in {text:?}"));
            }
        }
        let shown = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        // `send -` prints only a count.
        if !args.contains(&"-") && !shown.contains(r"\u{1b}]0;evil-title\u{7}") {
            problems.push(format!("{args:?}: the hostile text is not shown escaped"));
        }
    }
    // A daemon of another protocol version: its version string is quoted.
    let other = hostile_daemon(dir.path(), CTL_VERSION + 1);
    let out = run(&other, &["status"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    if !leaks(&err).is_empty() {
        problems.push(format!("version mismatch stderr: {err:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn json_output_keeps_the_hostile_text_exactly() {
    let dir = short_tempdir();
    let socket = hostile_daemon(dir.path(), CTL_VERSION);
    let out = run(&socket, &["--json", "list"], "");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["users"][0]["user"], E);
    let out = run(&socket, &["--json", "watch"], "");
    let first: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["last_error"], E);
    let out = run(&socket, &["--json", "reject", "bob"], "");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["message"], E);
}
