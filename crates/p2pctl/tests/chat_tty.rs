//! `chat` under a real terminal (SPEC §11, "chat for people"): tmux runs
//! p2pctl in a pane; `send-keys` types, `capture-pane` reads the screen.
//! Needs tmux (CI installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use p2p_testkit::{bin, short_tempdir, wait_for, Lines, TestDaemon, TestServer, DEADLINE};
use serde_json::Value;

/// A private tmux server (its own socket in a temp dir), killed on drop
/// even when the test fails.
struct Tmux {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Tmux {
        let ok = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "this test needs tmux to drive a real terminal: apt-get install tmux"
        );
        let dir = short_tempdir();
        Tmux {
            socket: dir.path().join("tmux.sock"),
            _dir: dir,
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A 120x30 session `name` running `p2pctl --socket SOCKET ARGS` with
    /// `TZ`.
    fn p2pctl(&self, name: &str, socket: &Path, args: &str, tz: &str) {
        // The exit code goes to a file: tmux does not always learn it.
        let cmd = format!(
            "env TZ={tz} {} --socket {} {args}; echo $? > {}",
            bin("p2pctl").display(),
            socket.display(),
            self.status_file(name).display()
        );
        let size = ["-x", "120", "-y", "30"];
        self.tmux(&[&["new-session", "-d", "-s", name][..], &size, &[&cmd]].concat());
        // Keep the pane after p2pctl exits, to read its last words.
        self.tmux(&["set-option", "-t", name, "remain-on-exit", "on"]);
    }

    /// Where the exit code of session `name`'s p2pctl is written.
    fn status_file(&self, name: &str) -> PathBuf {
        self._dir.path().join(format!("{name}.status"))
    }

    /// The exit code of session `name`'s p2pctl, once it exited.
    fn exit_code(&self, name: &str) -> Option<String> {
        let code = std::fs::read_to_string(self.status_file(name)).ok()?;
        code.ends_with('\n').then(|| code.trim().to_string())
    }

    /// `chat USER` in session `name` (see [`Tmux::p2pctl`]).
    fn chat(&self, name: &str, socket: &Path, user: &str, tz: &str) {
        self.p2pctl(name, socket, &format!("chat {user}"), tz);
    }

    /// Types `text` as it is (no key names).
    fn type_text(&self, name: &str, text: &str) {
        self.tmux(&["send-keys", "-t", name, "-l", text]);
    }

    /// Presses a key (`Enter`, `C-d`).
    fn key(&self, name: &str, key: &str) {
        self.tmux(&["send-keys", "-t", name, key]);
    }

    /// The screen's lines, trailing blank ones dropped.
    fn screen(&self, name: &str) -> Vec<String> {
        let text = self.tmux(&["capture-pane", "-p", "-t", name]);
        let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }

    /// Polls the screen until `check` finds what it wants (or fails with
    /// the screen after [`DEADLINE`]).
    fn wait<T>(&self, name: &str, what: &str, mut check: impl FnMut(&[String]) -> Option<T>) -> T {
        let mut last = Vec::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(DEADLINE, what, || {
                last = self.screen(name);
                check(&last)
            })
        }));
        match found {
            Ok(t) => t,
            Err(_) => panic!("{what}; the screen was:\n{}", last.join("\n")),
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// A server; alice and bob online with a session (alice invited, bob
/// accepted).
fn pair() -> (TestServer, TestDaemon, TestDaemon) {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let bob = TestDaemon::online(&server, "bob");
    assert_eq!(alice.ctl_json(&["connect", "bob", "--no-wait"]).0, 0);
    wait_for(DEADLINE, "bob's pending request", || {
        (bob.status()["pending"] == 1).then_some(())
    });
    let (code, doc) = bob.ctl_json(&["accept", "alice"]);
    assert_eq!(code, 0, "{doc}");
    wait_for(DEADLINE, "alice's session", || {
        (alice.status()["sessions"] == 1).then_some(())
    });
    (server, alice, bob)
}

/// `p2pctl --json watch` on `d`, as lines.
fn watch(d: &TestDaemon) -> (std::process::Child, Lines) {
    let mut child = Command::new(bin("p2pctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["--json", "watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::new(child.stdout.take().unwrap());
    // The current server state comes first, once subscribed.
    let first = lines.next_json("watch's first event");
    assert_eq!(first["event"], "server", "{first}");
    (child, lines)
}

/// Waits for a `chat` event from `peer` with `open`.
fn chat_event(lines: &Lines, peer: &str, open: bool) {
    loop {
        let v: Value = lines.next_json("a chat event");
        if v["event"] == "chat" && v["peer"] == peer && v["open"] == open {
            return;
        }
    }
}

/// The screen line holding `text`, and its index.
fn find(screen: &[String], text: &str) -> Option<usize> {
    screen.iter().position(|l| l.contains(text))
}

#[test]
fn incoming_lines_print_above_the_half_typed_line_in_local_time() {
    let (_server, alice, bob) = pair();
    let (mut bob_watch, events) = watch(&bob);
    let tmux = Tmux::new();
    tmux.chat("a", &alice.socket(), "bob", "America/New_York");
    tmux.wait("a", "alice's chat to start", |s| {
        find(s, "chatting with bob").map(|_| ())
    });
    // Opening tells the peer.
    chat_event(&events, "alice", true);

    tmux.type_text("a", "half typed");
    tmux.wait("a", "the half-typed line", |s| {
        (s.last()? == "> half typed").then_some(())
    });
    let out = bob.ctl(&["send", "alice", "hello from bob"]);
    assert!(out.status.success(), "{out:?}");
    let screen = tmux.wait("a", "bob's line above the prompt", |s| {
        let i = find(s, "bob: hello from bob")?;
        (s.last()? == "> half typed" && i + 1 < s.len()).then(|| s.to_vec())
    });
    // Local time, with the zone named (New York: EST or EDT).
    let bobs = &screen[find(&screen, "bob: hello from bob").unwrap()];
    assert!(
        bobs.contains(" EST ") || bobs.contains(" EDT "),
        "not New York time: {bobs:?}"
    );
    // Shown in the chat is read.
    wait_for(DEADLINE, "bob's line marked read", || {
        (alice.status()["unread"] == 0).then_some(())
    });

    tmux.type_text("a", " and the rest");
    tmux.key("a", "Enter");
    tmux.wait("a", "alice's own line shown", |s| {
        find(s, "you: half typed and the rest").map(|_| ())
    });
    assert_eq!(
        bob.inbox_texts(&["--all"]),
        ["half typed and the rest"],
        "bob got exactly the full line, once"
    );

    // bob opens and leaves a chat of his own (in a pipe): alice's shows it.
    let mut bobs_chat = Command::new(bin("p2pctl"))
        .arg("--socket")
        .arg(bob.socket())
        .args(["chat", "alice"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tmux.wait("a", "bob opened the chat", |s| {
        find(s, "bob opened the chat").map(|_| ())
    });
    drop(bobs_chat.stdin.take());
    assert!(bobs_chat.wait().unwrap().success());
    tmux.wait("a", "bob left the chat", |s| {
        find(s, "bob left the chat").map(|_| ())
    });

    // Ctrl-D leaves, and tells bob.
    tmux.key("a", "C-d");
    chat_event(&events, "alice", false);
    let code = tmux.wait("a", "chat to end at Ctrl-D", |_| tmux.exit_code("a"));
    assert_eq!(code, "0", "chat's exit code");
    let _ = bob_watch.kill();
    let _ = bob_watch.wait();
}

#[test]
fn chat_says_when_the_peer_goes_away_and_stays_open() {
    let (_server, alice, bob) = pair();
    let tmux = Tmux::new();
    tmux.chat("a", &alice.socket(), "bob", "UTC");
    tmux.wait("a", "alice's chat to start", |s| {
        find(s, "chatting with bob").map(|_| ())
    });
    assert!(bob.ctl(&["disconnect", "alice"]).status.success());
    tmux.wait("a", "bob went away", |s| {
        find(s, "bob went away").map(|_| ())
    });
    // Still open: a line typed now is answered (refused without a session,
    // or queued for a contact), and the prompt comes back.
    tmux.type_text("a", "still here");
    tmux.key("a", "Enter");
    tmux.wait("a", "the answer to a line typed after", |s| {
        let answered = find(s, "not sent: ").or_else(|| find(s, "(queued)"))?;
        (s.last()? == ">" && answered + 1 < s.len()).then_some(())
    });
    tmux.key("a", "C-d");
    let code = tmux.wait("a", "chat to end at Ctrl-D", |_| tmux.exit_code("a"));
    assert_eq!(code, "0", "chat's exit code");
}

#[test]
fn the_chat_notice_without_a_session_tells_nobody() {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let r = alice.request(r#"{"id":1,"cmd":"chat","user":"bob","open":true}"#);
    assert_eq!(
        r["result"],
        serde_json::json!({"peer": "bob", "told": false}),
        "{r}"
    );
}

#[test]
fn watch_rings_the_bell_for_a_request_on_a_terminal_only() {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let bob = TestDaemon::online(&server, "bob");
    let tmux = Tmux::new();
    tmux.p2pctl("w", &bob.socket(), "watch", "UTC");
    // Everything the pane's program writes, bytes as they are (a BEL
    // leaves no mark on the screen).
    let raw = tmux._dir.path().join("raw");
    let cat = format!("cat >> {}", raw.display());
    tmux.tmux(&["pipe-pane", "-t", "w", "-o", &cat]);
    tmux.wait("w", "watch to start", |s| {
        find(s, "server: online").map(|_| ())
    });
    // The same in a pipe.
    let mut piped = Command::new(bin("p2pctl"))
        .arg("--socket")
        .arg(bob.socket())
        .arg("watch")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::new(piped.stdout.take().unwrap());
    assert!(lines
        .next_line("the piped watch's first event")
        .contains("server"));

    assert_eq!(alice.ctl_json(&["connect", "bob", "--no-wait"]).0, 0);
    tmux.wait("w", "the request on the terminal", |s| {
        find(s, "alice asks to talk").map(|_| ())
    });
    wait_for(DEADLINE, "a BEL on the terminal", || {
        std::fs::read(&raw).ok()?.contains(&7).then_some(())
    });
    let line = lines.next_line("the request in the pipe");
    assert!(line.contains("alice asks to talk"), "{line}");
    assert!(!line.contains('\u{7}'), "no bell in a pipe: {line:?}");
    let _ = piped.kill();
    let _ = piped.wait();
}
