//! The connection cap (SPEC §3): a server with `--max-clients 50` and 55
//! daemons. The five over the cap are told "busy", report `connecting` with
//! an attempt count, and get in by themselves once five others log out.

use std::time::Duration;

use p2p_testkit::{wait_for, TestDaemon, TestServer, FAST_RECONNECT};

#[test]
fn fifty_five_daemons_against_a_cap_of_fifty() {
    let server = TestServer::start(&["--max-clients", "50"]);
    let users: Vec<String> = (0..55).map(|i| format!("user{i:02}")).collect();
    for u in &users {
        server.add_user(u, "long-enough-password");
    }
    let daemons: Vec<TestDaemon> = users
        .iter()
        .map(|_| TestDaemon::start(FAST_RECONNECT))
        .collect();
    let mut refused = Vec::new();
    for (i, (d, u)) in daemons.iter().zip(&users).enumerate() {
        let (code, doc) = d.login(&server, u, "long-enough-password");
        if i < 50 {
            assert_eq!(code, 0, "{u}: {doc}");
        } else {
            assert_eq!(code, 4, "{u} is over the cap: {doc}");
            assert_eq!(doc["error"]["code"], "server_unreachable");
            assert!(
                doc["error"]["message"].as_str().unwrap().contains("busy"),
                "{doc}"
            );
            refused.push(i);
        }
    }
    assert_eq!(refused.len(), 5);
    for &i in &refused {
        let s = daemons[i].status();
        assert_eq!(s["server"]["state"], "connecting", "{s}");
        assert!(s["server"]["attempt"].as_u64().unwrap() >= 1, "{s}");
        assert!(s["server"]["next_retry_ms"].is_u64(), "{s}");
    }
    let (_, list) = daemons[0].ctl_json(&["list"]);
    assert_eq!(list["users"].as_array().unwrap().len(), 50);

    for d in &daemons[..5] {
        assert_eq!(d.ctl(&["logout"]).status.code(), Some(0));
    }
    // Busy clients are told to wait 5 s; allow several rounds of that.
    for &i in &refused {
        daemons[i].wait_state("online", Duration::from_secs(90));
    }
    let (_, list) = daemons[54].ctl_json(&["list"]);
    let online: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect();
    assert_eq!(online.len(), 50);
    for &i in &refused {
        assert!(online.contains(&users[i].as_str()));
    }
    // The server saw the retries as busy rejections, not as logins.
    wait_for(Duration::from_secs(5), "busy log lines", || {
        server.log().contains("at capacity").then_some(())
    });
}
