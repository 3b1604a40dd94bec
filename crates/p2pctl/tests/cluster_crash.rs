//! Crash cycles on a cluster (SPEC §9, issue 13; the crash-cycle test of
//! issue 14, crash_cycle.rs, against three instances on one PostgreSQL):
//! while alice broadcasts, random instances are killed with `kill -9` and
//! restarted (and now and then a receiver's daemon). Every daemon knows all
//! three instances and fails over; the receivers start on different ones.
//! Afterwards every broadcast alice saw acknowledged is in each receiver's
//! inbox exactly once, in id order.
//!
//! Broadcasts only: messages go between daemons, and the server's part in
//! them (invitations) is tested across instances in cluster.rs.
//!
//! `CLUSTER_CRASH_CYCLES` (default 12) sets the number of kills and
//! `CRASH_SEED` replays a run (the seed is printed).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use p2p_testkit::rng::{env_or, Rng};
use p2p_testkit::{wait_for, TestDaemon, TestPostgres, TestServer, DEADLINE, FAST_RECONNECT};

/// Kills in a CI run: a few of each instance, kept short (each restart is
/// a process start and a database connection).
const DEFAULT_CYCLES: usize = 12;
/// Between two kills, alice gets between 1 and this many acknowledgements.
const MAX_ACKS_BETWEEN_KILLS: u64 = 6;
/// Presence lease: short, so a killed instance's rows go quickly.
const LEASE: &str = "3s";
/// The receivers.
const RECEIVERS: [&str; 2] = ["bob", "carol"];

/// alice's side: broadcasts with unique texts until `stop`, recording the
/// acknowledged ones as (id, text).
fn traffic(
    alice: &TestDaemon,
    stop: &AtomicBool,
    acked: &Mutex<Vec<(u64, String)>>,
    acks: &AtomicUsize,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let text = format!("b{n}");
        let (code, doc) = alice.ctl_json(&["broadcast", &text]);
        if code == 0 {
            let id = doc["broadcast"]["id"].as_u64().expect("broadcast id");
            acked.lock().unwrap().push((id, text));
            acks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Stops the sender when dropped (also when unwinding).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// (id, text) of the broadcasts in `d`'s inbox, in inbox order.
fn inbox_broadcasts(d: &TestDaemon) -> Vec<(u64, String)> {
    let (code, doc) = d.ctl_json(&["inbox", "--all"]);
    assert_eq!(code, 0, "{doc}");
    doc["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["kind"] == "broadcast")
        .map(|m| {
            let id = m["id"].as_u64().expect("broadcast id");
            (id, m["text"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn acknowledged_broadcasts_survive_kill_9_of_random_instances() {
    let cycles: usize = env_or("CLUSTER_CRASH_CYCLES", DEFAULT_CYCLES);
    let seed: u64 = env_or(
        "CRASH_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    println!("cluster crash cycle: CRASH_SEED={seed} CLUSTER_CRASH_CYCLES={cycles}");
    let mut rng = Rng(seed);

    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let flags = [
        "--database",
        &url,
        "--presence-lease",
        LEASE,
        "--broadcast-limit",
        "1000000",
    ];
    let mut s: Vec<TestServer> = (0..3).map(|_| TestServer::start(&flags)).collect();
    // Each daemon starts on its own instance: alice on the first, bob on
    // the second, carol on the third.
    let mut daemons: Vec<TestDaemon> = Vec::new();
    for (i, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
        let password = format!("{user}-password");
        s[0].add_user(user, &password);
        let list = (0..3)
            .map(|k| s[(i + k) % 3].address())
            .collect::<Vec<_>>()
            .join(",");
        let d = TestDaemon::start(FAST_RECONNECT);
        let (code, doc) = d.authenticate(
            "login",
            &list,
            user,
            &password,
            &["--fingerprint", &s[0].fingerprint],
        );
        assert_eq!(code, 0, "{doc}");
        daemons.push(d);
    }
    let alice = daemons.remove(0);
    let mut receivers = daemons;

    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::new());
    let acks = AtomicUsize::new(0);
    // Kills per instance, then per receiver.
    let mut kills = [0usize; 5];
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| traffic(&alice, &stop, &acked, &acks));
        // A failed wait below must stop the sender too, or the scope waits
        // for it forever.
        let _stop = StopOnDrop(&stop);
        for cycle in 0..cycles {
            let target = acks.load(Ordering::Relaxed) + rng.upto(MAX_ACKS_BETWEEN_KILLS) as usize;
            wait_for(DEADLINE, &format!("traffic before kill {cycle}"), || {
                (acks.load(Ordering::Relaxed) >= target || sender.is_finished()).then_some(())
            });
            assert!(!sender.is_finished(), "the sender stopped");
            // An instance three times in four, else a receiver's daemon.
            let victim = match rng.next_u64() % 8 {
                v @ 0..=5 => (v % 3) as usize,
                v => 3 + (v % 2) as usize,
            };
            if victim < 3 {
                s[victim].kill9();
                s[victim].restart();
            } else {
                receivers[victim - 3].kill9();
                receivers[victim - 3].restart();
            }
            kills[victim] += 1;
        }
        let target = acks.load(Ordering::Relaxed) + 1;
        wait_for(DEADLINE, "traffic after the last kill", || {
            (acks.load(Ordering::Relaxed) >= target).then_some(())
        });
        stop.store(true, Ordering::Relaxed);
        sender.join().expect("sender thread");
    });
    let acked = acked.into_inner().unwrap();
    println!(
        "cluster crash cycle: instance kills {:?}, receiver kills {:?}; {} broadcasts acknowledged",
        &kills[..3],
        &kills[3..],
        acked.len()
    );

    for (d, user) in receivers.iter().zip(RECEIVERS) {
        d.wait_state("online", DEADLINE);
        let got = wait_for(
            DEADLINE,
            &format!("every acknowledged broadcast at {user}"),
            || {
                let got = inbox_broadcasts(d);
                acked.iter().all(|a| got.contains(a)).then_some(got)
            },
        );
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "{user}: broadcasts duplicated or out of order (seed {seed}): {got:?}"
        );
    }
}
