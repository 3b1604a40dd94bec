//! `--invitation-ttl` end to end: the server's one expiry driver ends an
//! unanswered invitation, telling both sides (SPEC §3).

use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE};

#[test]
fn an_unanswered_invitation_expires_on_the_server_for_both_sides() {
    let server = TestServer::start(&["--invitation-ttl", "10s"]);
    let daemons: Vec<TestDaemon> = ["alice", "bob"]
        .iter()
        .map(|u| TestDaemon::online(&server, u))
        .collect();
    let (alice, bob) = (&daemons[0], &daemons[1]);
    // alice would wait far longer than the invitation lives: the answer she
    // gets is the server's expiry, not her own timeout.
    let (code, e) = alice.ctl_json(&["connect", "bob", "--timeout", "25s"]);
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (5, Some("timeout")),
        "{e}"
    );
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("did not answer in time"), "{e}");
    // bob was told too: his pending request is gone.
    wait_for(DEADLINE, "bob's request to be withdrawn", || {
        (bob.status()["pending"] == 0).then_some(())
    });
}
