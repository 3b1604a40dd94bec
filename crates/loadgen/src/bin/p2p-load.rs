//! `p2p-load`: runs the broadcast scale scenario against a real server and
//! prints the timings (see docs/BENCHMARKS.md).
//!
//! `cargo run --release -p p2p-loadgen --bin p2p-load -- --users 1000 --online 100`

use clap::Parser;
use p2p_testkit::TestServer;

/// Broadcast fan-out and catch-up benchmark.
#[derive(Parser)]
struct Args {
    /// Registered users.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Of which online when the broadcast is sent (the sender included).
    #[arg(long, default_value_t = 100)]
    online: usize,
    /// Concurrent catch-up logins.
    #[arg(long, default_value_t = 50)]
    parallel: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // Every client comes from 127.0.0.1: lift the per-source caps.
    let mut flags = vec!["--max-clients", "4096"];
    flags.extend(p2p_testkit::ONE_ADDRESS_CROWD);
    let server = TestServer::start(&flags);
    match p2p_loadgen::broadcast_scale(&server, args.users, args.online, args.parallel).await {
        Ok(r) => {
            println!(
                "users {} online {} parallel {}",
                args.users, args.online, args.parallel
            );
            println!(
                "stored (sender's wait)      {:>8.1} ms",
                r.store_latency.as_secs_f64() * 1e3
            );
            println!(
                "send -> all {:>5} online have it {:>8.1} ms",
                r.live_delivered,
                r.live_fanout.as_secs_f64() * 1e3
            );
            println!(
                "catch-up of {:>5} logins    {:>8.1} ms ({:.0} logins+deliveries/s)",
                r.caught_up,
                r.catch_up_total.as_secs_f64() * 1e3,
                r.caught_up as f64 / r.catch_up_total.as_secs_f64()
            );
        }
        Err(e) => {
            eprintln!("p2p-load: {e}");
            std::process::exit(1);
        }
    }
}
