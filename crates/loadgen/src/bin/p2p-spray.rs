//! `p2p-spray`: a password spray from many loopback addresses against a
//! fresh `p2p-server`, printing the server's memory and CPU before and after
//! (see docs/BENCHMARKS.md). Loopback only; bounded by `--attempts` and
//! `--deadline`.
//!
//! `cargo run --release -p p2p-loadgen --bin p2p-spray -- --attempts 2000`
//! Flags after `--` go to the server, e.g. `-- --login-failures-per-prefix 100000/1s`.

use std::time::Duration;

use clap::Parser;
use p2p_testkit::TestServer;

/// How long the server idles after the spray before its memory is read
/// again: what stays then is what the spray left behind (issue 14, item 9),
/// not work still in flight.
const IDLE_BEFORE_MEASURING: Duration = Duration::from_secs(2);

/// Password spray benchmark.
#[derive(Parser)]
struct Args {
    /// Wrong-password logins to send.
    #[arg(long, default_value_t = 2000)]
    attempts: usize,
    /// Concurrent attempts.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    /// Accounts that exist (the spray also tries as many unknown names).
    #[arg(long, default_value_t = 20)]
    users: usize,
    /// Stop starting attempts after this many seconds.
    #[arg(long, default_value_t = 300)]
    deadline: u64,
    /// Extra flags for p2p-server.
    #[arg(last = true)]
    server_args: Vec<String>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let extra: Vec<&str> = args.server_args.iter().map(String::as_str).collect();
    let server = TestServer::start(&extra);
    let mut users = Vec::new();
    for i in 0..args.users {
        let name = format!("user{i:03}");
        server.add_user(&name, "a-real-password");
        users.push(name);
        users.push(format!("nobody{i:03}"));
    }
    let pid = server.pid();
    let r = p2p_loadgen::spray::spray(
        server.addr,
        &server.fingerprint,
        pid,
        &users,
        args.attempts,
        args.parallel,
        Duration::from_secs(args.deadline),
    )
    .await;
    // A real user from an address that never failed, while every budget
    // the spray could exhaust still is.
    let real = p2p_loadgen::spray::attempt(
        server.addr,
        &server.fingerprint,
        std::net::Ipv4Addr::LOCALHOST.into(),
        &users[0],
        p2p_loadgen::spray::password("a-real-password"),
    )
    .await;
    // Memory that stays after the spray is what the issue is about: look
    // again once the server has been idle for a moment.
    tokio::time::sleep(IDLE_BEFORE_MEASURING).await;
    let idle = pid
        .and_then(|p| p2p_loadgen::spray::proc_stats(p).ok())
        .unwrap_or_default();
    println!(
        "attempts {} in {:.1} s from {} sources against {} names",
        r.attempts,
        r.elapsed.as_secs_f64(),
        p2p_loadgen::spray::SPRAY_SOURCES,
        users.len()
    );
    for (label, n) in &r.outcomes {
        println!("  {label:<16} {n}");
    }
    println!(
        "right after: {} from 127.0.0.1 -> {}",
        users[0],
        real.label()
    );
    let cpu = r.after.cpu.saturating_sub(r.before.cpu).as_secs_f64();
    println!(
        "server CPU {cpu:.1} s ({:.0}% of one core)",
        100.0 * cpu / r.elapsed.as_secs_f64()
    );
    println!(
        "server RSS before {} MiB, after {} MiB, 2 s later {} MiB, peak (VmHWM) {} MiB",
        r.before.rss_kib / 1024,
        r.after.rss_kib / 1024,
        idle.rss_kib / 1024,
        idle.hwm_kib / 1024
    );
}
