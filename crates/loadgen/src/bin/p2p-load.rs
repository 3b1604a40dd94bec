//! `p2p-load`: the broadcast benchmarks of issue 12, side by side with the
//! mosquitto anchor tool (see docs/BENCHMARKS.md, "Against mosquitto").
//! Starts its own `p2p-server` (pinned with `--server-cpus`), runs the
//! clients in this process (pinned with `--client-cpus`), and always kills
//! the server when it ends.
//!
//! `p2p-load fanout --online 1000 --rounds 5 --server-cpus 0 --client-cpus 1 --json`
//!
//! With `--database URL --instances K` it starts K instances on that
//! (empty) PostgreSQL database instead, spreads the sessions over them
//! round-robin, sends through the first, and reports the database's
//! statements and CPU too (SPEC §9; `scripts/bench-cluster.sh`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use p2p_loadgen::scenarios::{self, median};
use p2p_loadgen::server_proc::{self, ServerOpts, FD_MARGIN};
use p2p_loadgen::servers::Servers;
use serde_json::json;

/// Broadcast benchmarks against a real p2p-server.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send → all N online sessions have it; sender's answer; server CPU and RSS.
    Fanout {
        /// Online receiving sessions (the sender is one more).
        #[arg(long)]
        online: usize,
        /// Measured rounds (after one warm-up round).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        #[command(flatten)]
        common: Common,
    },
    /// N sessions drop, one broadcast is stored, all resume with their tokens.
    Catchup {
        /// Sessions.
        #[arg(long)]
        sessions: usize,
        #[command(flatten)]
        common: Common,
    },
    /// N sessions log in and stay: how many are held, RSS per session.
    Hold {
        /// Sessions.
        #[arg(long)]
        sessions: usize,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
struct Common {
    /// taskset CPU list for the server (e.g. 0).
    #[arg(long)]
    server_cpus: Option<String>,
    /// CPU list for this tool's clients (e.g. 1).
    #[arg(long)]
    client_cpus: Option<String>,
    /// The p2p-server binary (default: the one next to p2p-load).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The server's --max-clients (default: the sessions plus a margin).
    #[arg(long)]
    max_clients: Option<usize>,
    /// More flags for the server, e.g. --server-arg=--broadcast-ttl=1h.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// Serve from this PostgreSQL database (empty: the tool imports the
    /// accounts into it), postgres://user:password@host:port/db.
    #[arg(long)]
    database: Option<String>,
    /// p2p-server instances on --database (sessions spread round-robin).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    instances: u16,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn main() {
    let cli = Cli::parse();
    let (sessions, broadcasts, common) = match &cli.cmd {
        Cmd::Fanout {
            online,
            rounds,
            common,
        } => (*online + 1, *rounds as u32 + 1, common),
        Cmd::Catchup { sessions, common } => (*sessions + 1, 1, common),
        Cmd::Hold { sessions, common } => (*sessions, 1, common),
    };
    if let Err(e) = run(&cli.cmd, sessions, broadcasts, common) {
        eprintln!("p2p-load: {e}");
        std::process::exit(1);
    }
}

fn run(cmd: &Cmd, sessions: usize, broadcasts: u32, c: &Common) -> Result<(), String> {
    let (soft, hard) = server_proc::raise_fd_limit().map_err(|e| format!("fd limit: {e}"))?;
    // The server holds one fd per session, and so does this tool.
    let need = sessions as u64 + FD_MARGIN;
    if need > soft {
        eprintln!(
            "p2p-load: warning: {sessions} sessions need about {need} file descriptors per \
             process, but the limit is {soft} (hard {hard}); raise the hard limit (ulimit -Hn)"
        );
    }
    if let Some(cpus) = &c.client_cpus {
        server_proc::pin_self(cpus)?;
    }
    let mut opts = ServerOpts::for_sessions(sessions, broadcasts);
    opts.bin = c.server_bin.clone();
    opts.cpus = c.server_cpus.clone();
    opts.extra = c.server_args.clone();
    opts.database = c.database.clone();
    if let Some(m) = c.max_clients {
        opts.max_clients = m;
    }
    let workers = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map(|set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count()
        })
        .unwrap_or(1)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // Dropped at the end of this function, on error and on panic alike.
    let servers = Servers::start(&opts, c.instances.into()).map_err(|e| e.to_string())?;
    for server in servers.instances() {
        eprintln!(
            "p2p-load: p2p-server pid {} on {} (max clients {})",
            server.pid(),
            server.addr,
            opts.max_clients
        );
    }
    // On SIGINT or SIGTERM the scenario is abandoned and `server` dropped.
    let out = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            r = scenario(cmd, &servers) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
            _ = term.recv() => Err("terminated".to_string()),
        }
    })?;
    if c.json {
        println!("{out}");
    } else {
        for (k, v) in out.as_object().into_iter().flatten() {
            println!("{k:<32} {v}");
        }
    }
    Ok(())
}

async fn scenario(cmd: &Cmd, servers: &Servers) -> Result<serde_json::Value, String> {
    let instances = servers.instances().len();
    let database = servers.database().is_some();
    Ok(match cmd {
        Cmd::Fanout { online, rounds, .. } => {
            let r = scenarios::fanout(servers, *online, *rounds).await?;
            let db = r.db.clone().map(|d| {
                json!({
                    "statements_per_login": d.statements_per_login,
                    "online_per_instance": d.online_per_instance,
                    "idle_statements_per_s": d.idle_statements_per_s,
                    "statements_per_broadcast": d.statements_per_broadcast,
                    "cpu_us_per_delivery": d.cpu_us_per_delivery,
                    "top": d.top,
                })
            });
            json!({
                "scenario": "fanout",
                "instances": instances,
                "database": database,
                "online": r.online,
                "login_ms": r.login_ms,
                "logins_per_s": r.online as f64 * 1e3 / r.login_ms.max(1e-3),
                "rounds": r.fanout_all_ms.len(),
                "fanout_all_ms_median": median(&r.fanout_all_ms),
                "store_ms_median": median(&r.store_ms),
                "server_cpu_us_per_delivery": r.server_cpu_us_per_delivery,
                "server_rss_bytes_per_session": r.server_rss_bytes_per_session,
                "fanout_all_ms": r.fanout_all_ms,
                "store_ms": r.store_ms,
                "deliveries_checked": r.deliveries,
                "db": db,
            })
        }
        Cmd::Catchup { sessions, .. } => {
            let r = scenarios::catchup(servers, *sessions).await?;
            json!({
                "scenario": "catchup",
                "instances": instances,
                "database": database,
                "sessions": sessions,
                "catchups_per_s": *sessions as f64 * 1e3 / r.catchup_all_ms.max(1e-3),
                "caught_up": r.caught_up,
                "tls_resumed": r.tls_resumed,
                "catchup_all_ms": r.catchup_all_ms,
                "server_cpu_ms": r.server_cpu_ms,
                "db_cpu_ms": r.db_cpu_ms,
                "db_statements_per_session": r.db_statements_per_session,
            })
        }
        Cmd::Hold { sessions, .. } => {
            let r = scenarios::hold(servers, *sessions).await?;
            json!({
                "scenario": "hold",
                "instances": instances,
                "database": database,
                "sessions": sessions,
                "held": r.held,
                "server_rss_bytes_per_session": r.server_rss_bytes_per_session,
                "first_error": r.first_error,
            })
        }
    })
}
