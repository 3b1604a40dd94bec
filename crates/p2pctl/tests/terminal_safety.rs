//! Terminal safety (SPEC §11) end to end: a peer and a broadcaster send
//! text full of escape sequences, and every human-mode command that prints
//! other people's text shows it with no raw control character, while
//! `--json` keeps the exact text.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use p2p_testkit::{bin, wait_for, TestDaemon, TestServer, DEADLINE};
use serde_json::{json, Value};

/// Erase the line, return to its start, set the window title, write the
/// clipboard (OSC 52), back up over text, clear the screen through the C1
/// CSI (no ESC at all), reverse the rest of the line, ring the bell; then a
/// second line with a tab.
const ATTACK: &str = "\u{1b}[2K\r\u{1b}]0;pwned-title\u{7}\u{1b}]52;c;cm0gLXJmIH4K\u{1b}\\\
                      \u{8}\u{8}\u{9b}2J\u{9d}0;c1-title\u{9c}\u{202e}exe.txt\u{2066}\u{7f}\u{1}\n\
                      line two\tcol";

/// The attack text, tagged so each delivery can be found in the output; a
/// NUL too, which cannot travel in an argument but can over the socket.
fn attack(tag: &str) -> String {
    format!("{tag} {ATTACK}\u{0}")
}

/// What in `bytes` a terminal would act on rather than print: C0 controls
/// other than newline and tab, DEL, C1 controls, bidi overrides and
/// isolates. Recorded in `leaks` (so one run names every command that
/// leaks, not only the first).
fn check(leaks: &mut Vec<String>, what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let raw: Vec<char> = text
        .chars()
        .filter(|c| {
            matches!(c,
                '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    if std::str::from_utf8(bytes).is_err() {
        leaks.push(format!("{what}: not UTF-8"));
    }
    if !raw.is_empty() {
        leaks.push(format!("{what}: raw {raw:?} in {text:?}"));
    }
}

/// A long-running p2pctl (watch, chat, inbox --follow) whose output is
/// collected on threads, so the test can wait on it with a deadline.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                return;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Running {
    fn start(d: &TestDaemon, args: &[&str]) -> Running {
        let mut child = Command::new(bin("p2pctl"))
            .args(["--socket", d.socket().to_str().unwrap()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, err) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&out)),
            collect(child.stderr.take().unwrap(), Arc::clone(&err)),
        ];
        Running {
            stdin: child.stdin.take(),
            child,
            out,
            err,
            readers,
        }
    }

    /// Waits until stdout holds every one of `needles`.
    fn wait_out(&self, needles: &[&str]) {
        wait_for(DEADLINE, &format!("{needles:?} in the output"), || {
            let out = String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned();
            needles.iter().all(|n| out.contains(n)).then_some(())
        });
    }

    /// Stops it (if still running) and returns stdout and stderr.
    fn finish(mut self) -> (Vec<u8>, Vec<u8>) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        let out = std::mem::take(&mut *self.out.lock().unwrap());
        let err = std::mem::take(&mut *self.err.lock().unwrap());
        (out, err)
    }
}

/// Runs a short human-mode command and checks both of its streams.
fn human(leaks: &mut Vec<String>, d: &TestDaemon, args: &[&str]) -> String {
    let out = d.ctl(args);
    check(leaks, &format!("{args:?} stdout"), &out.stdout);
    check(leaks, &format!("{args:?} stderr"), &out.stderr);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A request straight over the control socket, as an attacker's script
/// would send it (any text, NUL included); the result must be a success.
fn request(d: &TestDaemon, cmd: Value) -> Value {
    let mut line = cmd;
    line["id"] = json!(7);
    let resp = d.request(&line.to_string());
    assert!(resp["error"].is_null(), "{resp}");
    resp["result"].clone()
}

fn send(from: &TestDaemon, to: &str, text: &str) {
    request(from, json!({"cmd": "send", "user": to, "texts": [text]}));
}

#[test]
fn other_peoples_text_never_reaches_the_terminal_raw() {
    let server = TestServer::start(&[]);
    let (alice, bob, carol) = (
        TestDaemon::online(&server, "alice"),
        TestDaemon::online(&server, "bob"),
        TestDaemon::online(&server, "carol"),
    );
    assert_eq!(alice.ctl_json(&["connect", "bob", "--no-wait"]).0, 0);
    wait_for(DEADLINE, "bob's request", || {
        (bob.status()["pending"] == 1).then_some(())
    });
    assert_eq!(bob.ctl_json(&["accept", "alice"]).0, 0);
    let mut leaks = Vec::new();

    // watch, human and JSON, while a message and a broadcast arrive.
    let watch = Running::start(&bob, &["watch"]);
    let watch_json = Running::start(&bob, &["--json", "watch"]);
    watch.wait_out(&["server"]);
    watch_json.wait_out(&["server"]);
    send(&alice, "bob", &attack("MSG1"));
    request(&carol, json!({"cmd": "broadcast", "text": attack("BC1")}));
    watch.wait_out(&["MSG1", "BC1"]);
    watch_json.wait_out(&["MSG1", "BC1"]);
    let (out, err) = watch.finish();
    check(&mut leaks, "watch stdout", &out);
    check(&mut leaks, "watch stderr", &err);
    let shown = String::from_utf8_lossy(&out);
    let visible = shown.contains(r"\u{1b}]52;c;") && shown.contains("\n    line two\tcol");
    if !visible {
        leaks.push(format!("watch: the text is not shown escaped: {shown:?}"));
    }
    let (out, _) = watch_json.finish();
    let texts: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|ev| ev["event"] == "message" || ev["event"] == "broadcast")
        .map(|ev| ev["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        texts,
        [attack("MSG1"), attack("BC1")],
        "watch --json is exact"
    );

    // inbox (the unread ones), inbox --all; JSON keeps every byte.
    let shown = human(&mut leaks, &bob, &["inbox"]);
    assert!(shown.contains("MSG1") && shown.contains("BC1"), "{shown}");
    if !shown.contains(r"\u{9b}2J\u{9d}0;c1-title\u{9c}\u{202e}exe.txt") {
        leaks.push(format!("inbox: the text is not shown escaped: {shown:?}"));
    }
    let shown = human(&mut leaks, &bob, &["inbox", "--all"]);
    assert!(shown.contains("MSG1") && shown.contains("BC1"), "{shown}");
    let (code, doc) = bob.ctl_json(&["inbox", "--all"]);
    assert_eq!(code, 0, "{doc}");
    let texts: Vec<&str> = doc["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, [attack("MSG1"), attack("BC1")]);

    // inbox --follow: the unread backlog, then what arrives while following.
    send(&alice, "bob", &attack("FOLLOW1"));
    let follow = Running::start(&bob, &["inbox", "--follow"]);
    follow.wait_out(&["FOLLOW1"]);
    send(&alice, "bob", &attack("FOLLOW2"));
    follow.wait_out(&["FOLLOW2"]);
    let (out, err) = follow.finish();
    check(&mut leaks, "inbox --follow stdout", &out);
    check(&mut leaks, "inbox --follow stderr", &err);

    // chat in a pipe: once bob's "ready" reached alice, bob's chat is
    // watching (it reads stdin only after subscribing).
    let mut chat = Running::start(&bob, &["chat", "alice"]);
    chat.stdin.as_mut().unwrap().write_all(b"ready\n").unwrap();
    wait_for(DEADLINE, "bob's chat line at alice", || {
        let (_, doc) = alice.ctl_json(&["inbox", "--all"]);
        doc["messages"]
            .as_array()?
            .iter()
            .any(|m| m["text"] == "ready")
            .then_some(())
    });
    send(&alice, "bob", &attack("CHAT"));
    chat.wait_out(&["CHAT"]);
    drop(chat.stdin.take());
    let status = chat.child.wait().unwrap();
    assert!(status.success(), "chat ends at end of input: {status:?}");
    let (out, err) = chat.finish();
    check(&mut leaks, "chat stdout", &out);
    check(&mut leaks, "chat stderr", &err);

    // Lists and status, with a pending request and a session to show.
    assert_eq!(carol.ctl_json(&["connect", "bob", "--no-wait"]).0, 0);
    wait_for(DEADLINE, "carol's request", || {
        (bob.status()["pending"] == 1).then_some(())
    });
    assert!(human(&mut leaks, &bob, &["requests"]).contains("carol"));
    assert!(human(&mut leaks, &bob, &["list"]).contains("carol"));
    assert!(human(&mut leaks, &bob, &["sessions"]).contains("alice"));
    assert!(human(&mut leaks, &bob, &["status"]).contains("online as bob"));

    // A hostile name is refused as a name no account can have; whatever
    // the error says stays clean. (Errors that do echo foreign text are
    // covered field by field in terminal_safety_fields.rs.)
    let out = bob.ctl(&["send", ATTACK, "hello"]);
    assert_eq!(out.status.code(), Some(2), "bad_request is a usage error");
    check(&mut leaks, "error stderr", &out.stderr);
    assert!(String::from_utf8_lossy(&out.stderr).contains("user name"));

    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}
