//! The `p2p-load` scenarios (issue 12) at small sizes, with checked counts
//! (never times): every session gets every broadcast exactly once, every
//! resumed session catches up, every session is held, and the server the
//! tool started is gone when the tool fails.

use std::process::Command;

use p2p_loadgen::scenarios;
use p2p_loadgen::server_proc::ServerOpts;
use p2p_loadgen::servers::Servers;

fn server(sessions: usize, broadcasts: u32) -> Servers {
    Servers::start(&ServerOpts::for_sessions(sessions, broadcasts), 1).expect("start p2p-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_every_session_gets_every_broadcast_once() {
    let s = server(21, 3);
    let r = scenarios::fanout(&s, 20, 2).await.expect("fanout");
    // One warm-up and two measured rounds, each to all 20 sessions; the
    // scenario itself fails on a wrong, repeated or missing id.
    assert_eq!(r.broadcasts, 3);
    assert_eq!(r.deliveries, 60);
    assert_eq!(r.fanout_all_ms.len(), 2);
    assert_eq!(r.store_ms.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catchup_every_resumed_session_gets_the_broadcast() {
    let s = server(21, 1);
    let r = scenarios::catchup(&s, 20).await.expect("catchup");
    assert_eq!(r.caught_up, 20);
    // Each user kept its own tickets: every reconnect is a PSK handshake.
    assert_eq!(r.tls_resumed, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_holds_every_session() {
    let s = server(50, 1);
    let r = scenarios::hold(&s, 50).await.expect("hold");
    assert_eq!(r.first_error, None);
    assert_eq!(r.held, 50);
}

/// The issue: the tool left its server running when it failed. Here the
/// scenario fails (the server refuses the third broadcast), and the server
/// must be gone (killed and reaped) by the time the tool has exited.
#[test]
fn failing_run_leaves_no_server_behind() {
    let out = Command::new(env!("CARGO_BIN_EXE_p2p-load"))
        .args(["fanout", "--online", "3", "--rounds", "2"])
        .arg("--server-arg=--broadcast-limit=2")
        .output()
        .expect("run p2p-load");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("broadcast refused"), "{stderr}");
    let pid: u32 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("p2p-load: p2p-server pid "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no server pid in: {stderr}"));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "p2p-server {pid} still running after p2p-load failed"
    );
}
