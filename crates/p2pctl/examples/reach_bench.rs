//! Figures for reaching peers (docs/BENCHMARKS.md, SPEC §10), measured in
//! the NAT lab (`p2p_testkit::netlab`) with the real binaries: how long from
//! `accept` to a session that is up, for a direct session between two
//! public hosts, one punched through two cone NATs and one relayed between
//! two symmetric NATs; then, on the direct and the relayed session, the
//! round trip of a 1-byte message and the throughput of a pipeline of
//! lines, and the server's CPU per relayed megabyte.
//!
//! ```sh
//! cargo build --release --workspace --bins --examples
//! sudo target/release/examples/reach_bench [ROUNDS]
//! ```
//!
//! Needs root (network namespaces). Prints one Markdown table per figure.
//! `P2P_BENCH_SERVER_ARGS` adds flags to every server (e.g.
//! `--relay-bytes-per-sec 1000000000` to take the relay's per-user pace
//! out of the throughput figure).

use std::time::{Duration, Instant};

use p2p_testkit::netlab::{self, Host, Lab, Nat, WAN_IP};
use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE};

/// Lines in the throughput run.
const PIPELINE_LINES: usize = 100_000;
/// Round trips timed per session.
const ROUND_TRIPS: usize = 50;

#[derive(Clone, Copy)]
enum Scenario {
    Public,
    TwoCones,
    TwoSymmetric,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Public => "direct (two public hosts)",
            Scenario::TwoCones => "punched (two cone NATs)",
            Scenario::TwoSymmetric => "relayed (two symmetric NATs)",
        }
    }

    fn hosts(self, lab: &mut Lab) -> (Host, Host) {
        match self {
            Scenario::Public => (lab.flat_host(), lab.flat_host()),
            Scenario::TwoCones | Scenario::TwoSymmetric => {
                let nat = if matches!(self, Scenario::TwoCones) {
                    Nat::Cone
                } else {
                    Nat::Symmetric
                };
                let (r1, r2) = (lab.router(nat), lab.router(nat));
                (lab.host(&r1), lab.host(&r2))
            }
        }
    }
}

/// `accept` from the moment it is run until it returns with the session.
fn accept_to_up(alice: &TestDaemon, bob: &TestDaemon) -> (Duration, String) {
    let (code, doc) = alice.ctl_json(&["connect", "bob", "--no-wait"]);
    assert_eq!(code, 0, "{doc}");
    wait_for(DEADLINE, "bob's pending request", || {
        let (_, r) = bob.ctl_json(&["requests"]);
        (r["requests"].as_array()?.first()?["from"] == "alice").then_some(())
    });
    let t = Instant::now();
    let (code, doc) = bob.ctl_json(&["accept", "alice"]);
    let took = t.elapsed();
    assert_eq!(code, 0, "{doc}");
    let path = doc["session"]["path"].as_str().unwrap_or("?").to_string();
    (took, path)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    p2p_loadgen::spray::proc_stats(pid)
        .expect("the server's /proc stat")
        .cpu
        .as_secs_f64()
}

struct Figures {
    up: Vec<Duration>,
    path: String,
    rtt: Duration,
    lines_per_s: f64,
    mb_per_s: f64,
    server_cpu_ms_per_mb: f64,
}

fn measure(s: Scenario, rounds: usize) -> Figures {
    let mut up = Vec::new();
    let mut path = String::new();
    let mut last = None;
    for _ in 0..rounds {
        let mut lab = Lab::new();
        let (a, b) = s.hosts(&mut lab);
        let extra = std::env::var("P2P_BENCH_SERVER_ARGS").unwrap_or_default();
        let extra: Vec<&str> = extra.split_whitespace().collect();
        let server = TestServer::start_in(&lab.wan().ns, &format!("{WAN_IP}:0"), &extra);
        let alice = TestDaemon::online_in(&a.ns, &server, "alice");
        let bob = TestDaemon::online_in(&b.ns, &server, "bob");
        let (took, p) = accept_to_up(&alice, &bob);
        up.push(took);
        path = p;
        last = Some((alice, bob, server, lab));
    }
    let (alice, bob, server, _lab) = last.expect("one round");
    let rtt = median(
        (0..ROUND_TRIPS)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(alice.ctl_json(&["send", "bob", "x"]).0, 0);
                t.elapsed()
            })
            .collect(),
    );
    let lines: String = (0..PIPELINE_LINES)
        .map(|i| format!("line {i:06} of the pipeline through the session\n"))
        .collect();
    let cpu0 = cpu_seconds(server.pid().expect("server pid"));
    let t = Instant::now();
    let out = alice.ctl_stdin(&["send", "bob", "-"], &lines);
    let took = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cpu = cpu_seconds(server.pid().expect("server pid")) - cpu0;
    let mb = lines.len() as f64 / 1e6;
    drop(bob);
    Figures {
        up,
        path,
        rtt,
        lines_per_s: PIPELINE_LINES as f64 / took,
        mb_per_s: mb / took,
        server_cpu_ms_per_mb: cpu * 1000.0 / mb,
    }
}

fn main() {
    if !netlab::require_root("reach_bench") {
        std::process::exit(1);
    }
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let all: Vec<(Scenario, Figures)> =
        [Scenario::Public, Scenario::TwoCones, Scenario::TwoSymmetric]
            .into_iter()
            .map(|s| (s, measure(s, rounds)))
            .collect();
    println!("| session | path | accept → up, median of {rounds} | min | max |");
    println!("|---|---|---|---|---|");
    for (s, f) in &all {
        let (min, max) = (f.up.iter().min().unwrap(), f.up.iter().max().unwrap());
        println!(
            "| {} | {} | {} | {} | {} |",
            s.name(),
            f.path,
            ms(median(f.up.clone())),
            ms(*min),
            ms(*max)
        );
    }
    println!();
    println!("| session | `send bob x` round trip, median of {ROUND_TRIPS} | `send bob -` {PIPELINE_LINES} lines | MB/s | server CPU per MB carried |");
    println!("|---|---|---|---|---|");
    for (s, f) in &all {
        println!(
            "| {} | {} | {:.0} lines/s | {:.2} | {:.1} ms |",
            s.name(),
            ms(f.rtt),
            f.lines_per_s,
            f.mb_per_s,
            f.server_cpu_ms_per_mb
        );
    }
}
