//! The `p2p-server` command line (SPEC Appendix A): serve, `user add|remove|
//! passwd|list`, `fingerprint`, `check-config`. `--config FILE` is read by
//! [`crate::config_file`]; serving is in [`crate::serve`].

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};

use crate::config_file::Either;
use p2p_proto::limits::DEFAULT_SERVER_PORT;
use p2p_proto::time::parse_duration;

use crate::error::{Result, ServerError};
use crate::throttle::{Budget, Limits};
use crate::tls::TlsSource;
use crate::users::UserFile;
use crate::{ServerConfig, DEFAULT_MAX_CLIENTS};

/// Exit code of a usage or configuration error.
pub(crate) const USAGE_EXIT: u8 = 2;

/// Smallest accepted `--max-clients`: the spec requires holding 50.
pub(crate) const MIN_MAX_CLIENTS: usize = 50;

/// p2p-broadcast rendezvous server: accounts, login, presence.
///
/// Without a subcommand, serves clients over TLS. Exit codes: 0 success,
/// 1 error, 2 usage.
#[derive(Debug, Parser)]
// The last of a repeated flag wins: `--config` puts the file's flags
// before the command line's (see config_file).
#[command(name = "p2p-server", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// TOML config file: one key per flag, named like the flag in snake_case
    /// (see docs/config.md); a flag on the command line beats the file.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory (users.csv, state.db, TLS key and certificate).
    /// Default: $STATE_DIRECTORY, else the XDG data dir for p2p-server.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The admin socket (status, sessions, kick). Default: admin.sock in
    /// the data directory.
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) admin_socket: Option<PathBuf>,
    /// Log level or filter (e.g. debug, info,p2p_server=trace); default RUST_LOG, else info.
    #[arg(long, global = true, value_name = "LEVEL", value_parser = p2p_sys::logging::parse_log_level)]
    pub(crate) log_level: Option<String>,
    /// Shared PostgreSQL database (postgres:// or postgresql://): accounts,
    /// tokens, presence, invitations and broadcasts shared by every
    /// instance on it (SPEC §9); also what the `user` commands act on.
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) database: Option<String>,
    /// PEM file of the CA that signed the database's certificate: every
    /// connection to the database is then TLS, verified against it.
    #[arg(long, global = true, value_name = "FILE", requires = "database")]
    pub(crate) database_ca: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The flags of the server itself (every one also a config-file key).
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on: HOST, HOST:PORT, IP:PORT or [IPv6]:PORT, as
    /// `p2pctl login --server` takes them (default port 4400).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen,
          default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_SERVER_PORT)))]
    pub(crate) listen: SocketAddr,
    /// Most concurrent connections; more are told "busy, retry after" and closed.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CLIENTS,
          value_parser = clap::value_parser!(u64).range(MIN_MAX_CLIENTS as u64..).map(|n| n as usize))]
    pub(crate) max_clients: usize,
    /// Let people create their own accounts with `p2pctl register`.
    #[arg(long)]
    pub(crate) open_registration: bool,
    /// PEM certificate chain (instead of the generated self-signed one).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Close connections that have not logged in within this time.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, hide = true)]
    pub(crate) login_timeout: Duration,
    /// Close connections that send nothing (no TLS ClientHello) within this time.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration, hide = true)]
    pub(crate) first_byte_timeout: Duration,
    /// Most connections not yet logged in from one IPv4 address (or IPv6 /64).
    #[arg(long, value_name = "N", default_value_t = crate::sources::DEFAULT_PER_ADDRESS,
          value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    pub(crate) max_unauthenticated_per_address: usize,
    /// Most connections not yet logged in from one IPv4 /24 (or IPv6 /48).
    #[arg(long, value_name = "N", default_value_t = crate::sources::DEFAULT_PER_NETWORK,
          value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    pub(crate) max_unauthenticated_per_network: usize,
    /// Invitations per minute from one IPv4 address (or IPv6 /64), all its users together.
    #[arg(long, value_name = "N", default_value_t = crate::invite_limits::DEFAULT_INVITES_PER_ADDRESS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) invites_per_address: u32,
    /// Unanswered invitations expire after this (10s to 1h); also how long
    /// `p2pctl connect` waits by default. A reload applies it to new invitations.
    #[arg(long, value_name = "DURATION",
          default_value = "5m", value_parser = crate::invitations::parse_ttl)]
    pub(crate) invitation_ttl: Duration,
    /// Drop a session after this much silence (daemons ping every 15s).
    #[arg(long, value_name = "DURATION", default_value = "45s", value_parser = parse_duration, hide = true)]
    pub(crate) idle_timeout: Duration,
    /// How long a broadcast keeps being delivered to users who log in.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub(crate) broadcast_ttl: Duration,
    /// Broadcasts one user may send per --broadcast-window.
    #[arg(long, value_name = "N", default_value_t = p2p_proto::limits::DEFAULT_BROADCAST_LIMIT)]
    pub(crate) broadcast_limit: u32,
    /// The window of --broadcast-limit.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub(crate) broadcast_window: Duration,
    /// Failed password checks one address may make (COUNT/DURATION: a burst
    /// of COUNT, refilled over DURATION); past it the address waits.
    #[arg(long, value_name = "N/DURATION", default_value_t = Limits::default().per_source)]
    pub(crate) login_failures_per_source: Budget,
    /// Failed password checks one /24 (IPv4) or /64 (IPv6) may make.
    #[arg(long, value_name = "N/DURATION", default_value_t = Limits::default().per_prefix)]
    pub(crate) login_failures_per_prefix: Budget,
    /// Failed password checks of the whole server, past which addresses that
    /// failed recently are told "busy" without a check.
    #[arg(long, value_name = "N/DURATION", default_value_t = Limits::default().global)]
    pub(crate) login_failures_global: Budget,
    /// Registration attempts one address may make (--open-registration).
    #[arg(long, value_name = "N/DURATION", default_value_t = Limits::default().registrations_per_source)]
    pub(crate) registrations_per_source: Budget,
    /// Registration attempts one /24 (IPv4) or /64 (IPv6) may make.
    #[arg(long, value_name = "N/DURATION", default_value_t = Limits::default().registrations_per_prefix)]
    pub(crate) registrations_per_prefix: Budget,
    /// Prometheus metrics at http://ADDR/metrics and /healthz (keep it off
    /// the public address), or "off".
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9464")]
    pub(crate) metrics_listen: MetricsListen,
    /// Run no relay: issue no relay tokens and refuse every relay join.
    #[arg(long)]
    pub(crate) no_relay: bool,
    /// Most relayed sessions one user may have (live, or waiting for the peer).
    #[arg(long, value_name = "N", default_value_t = crate::relay::DEFAULT_SESSIONS_PER_USER,
          value_parser = clap::value_parser!(u64).range(1..).map(|n| n as usize))]
    pub(crate) relay_sessions_per_user: usize,
    /// Bytes per second one user may send through the relay, all its sessions together (paced).
    #[arg(long, value_name = "BYTES", default_value_t = crate::relay::DEFAULT_BYTES_PER_SEC,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) relay_bytes_per_sec: u64,
    /// End a relayed session after this long with no byte either way.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub(crate) relay_idle: Duration,
    /// How long the first side at the relay waits for the second.
    #[arg(long, value_name = "DURATION", default_value = "4s", value_parser = parse_duration)]
    pub(crate) relay_pair_timeout: Duration,
    /// An unused relay token dies after this.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub(crate) relay_token_ttl: Duration,
    /// With --database: how long a killed instance's users stay in `list`
    /// (the presence lease, renewed every third of it), 3s to 1h.
    #[arg(long, value_name = "DURATION", default_value = "90s",
          value_parser = |s: &str| bounded(s, Duration::from_secs(3), Duration::from_secs(3600)))]
    pub(crate) presence_lease: Duration,
    /// With --database: how often broadcasts and session events are read
    /// even without a notification (the most a lost one delays), 100ms to 1m.
    #[arg(long, value_name = "DURATION", default_value = "1s",
          value_parser = |s: &str| bounded(s, Duration::from_millis(100), Duration::from_secs(60)))]
    pub(crate) cluster_poll: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage accounts in users.csv, or in PostgreSQL with --database
    /// (works while the server runs).
    #[command(subcommand)]
    User(crate::user_cmd::UserCommand),
    /// Show the running server: version, addresses, sessions, accounts.
    Status {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Who is online, since when, from where.
    Sessions {
        /// One JSON document: {"sessions":[{"user","since","address"}]}.
        #[arg(long)]
        json: bool,
    },
    /// End USER's session now; their daemon is logged out and says why.
    Kick {
        /// Account name.
        user: String,
    },
    /// Check the configuration (flags and --config FILE) without starting:
    /// exit 0 if the server would start with it, 2 with the reason if not.
    CheckConfig,
    /// Print the TLS certificate fingerprint clients will pin.
    Fingerprint {
        /// The certificate the server runs with, if not the generated one.
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<PathBuf>,
    },
}

/// `--listen`: an `IP:PORT` as is (port 0 included: any free port), else
/// the forms [`p2p_proto::address::parse_host_port`] takes, a host name
/// resolved to its first address.
fn parse_listen(s: &str) -> std::result::Result<SocketAddr, String> {
    if let Ok(a) = s.trim().parse() {
        return Ok(a);
    }
    let hp = p2p_proto::address::parse_host_port(s).map_err(|e| e.to_string())?;
    std::net::ToSocketAddrs::to_socket_addrs(hp.as_str())
        .map_err(|e| format!("{hp}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hp}: the name has no address"))
}

/// `--metrics-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetricsListen(pub(crate) Option<SocketAddr>);

impl std::str::FromStr for MetricsListen {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "off" {
            return Ok(MetricsListen(None));
        }
        s.parse()
            .map(|a| MetricsListen(Some(a)))
            .map_err(|e| format!("{e}: expected IP:PORT or off"))
    }
}

/// The data directory: flag, else systemd's `$STATE_DIRECTORY`, else XDG.
pub(crate) fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = flag {
        return Ok(d);
    }
    if let Some(d) = std::env::var_os("STATE_DIRECTORY") {
        // systemd may pass several, colon-separated; the first is ours.
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        return Ok(PathBuf::from(first));
    }
    directories::ProjectDirs::from("", "", "p2p-server")
        .map(|p| p.data_dir().to_path_buf())
        .ok_or_else(|| ServerError::Config("no home directory; pass --data-dir".into()))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cli = match crate::config_file::parse(&argv) {
        Ok(cli) => cli,
        Err(Either::Clap(e)) => e.exit(),
        Err(Either::Config(e)) => {
            eprintln!("p2p-server: {e}");
            return ExitCode::from(USAGE_EXIT);
        }
    };
    let checking = matches!(cli.command, Some(Command::CheckConfig));
    match dispatch(cli, argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("p2p-server: {e}");
            // check-config's whole answer is "usable or not".
            if checking || matches!(e, ServerError::Usage(_)) {
                ExitCode::from(USAGE_EXIT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn dispatch(cli: Cli, argv: Vec<OsString>) -> Result<()> {
    let dir = data_dir(cli.data_dir.clone())?;
    let file = || UserFile::in_dir(&dir);
    let admin = || crate::admin::socket_path(cli.admin_socket.as_deref(), &dir);
    let ensure_dir = || p2p_sys::fsutil::ensure_private_dir(&dir).map_err(ServerError::file(&dir));
    match cli.command {
        None => crate::serve::serve(cli, argv),
        Some(Command::CheckConfig) => check_config(&cli),
        Some(Command::Status { json }) => crate::admin::client::status(&admin(), json),
        Some(Command::Sessions { json }) => crate::admin::client::sessions(&admin(), json),
        Some(Command::Kick { ref user }) => crate::admin::client::kick(&admin(), user),
        Some(Command::Fingerprint { tls_cert }) => {
            let source = match tls_cert {
                Some(cert) => TlsSource::Files {
                    key: cert.clone(),
                    cert,
                },
                None => TlsSource::SelfSigned,
            };
            println!("{}", crate::tls::fingerprint(&source, &dir)?);
            Ok(())
        }
        Some(Command::User(cmd)) => match cli.database {
            Some(url) => crate::user_cmd::on_database(&url, cli.database_ca.as_deref(), cmd),
            None => crate::user_cmd::on_file(&file(), ensure_dir, cmd),
        },
    }
}

/// A duration between `min` and `max`.
fn bounded(s: &str, min: Duration, max: Duration) -> std::result::Result<Duration, String> {
    let d = parse_duration(s)?;
    if !(min..=max).contains(&d) {
        return Err(format!(
            "{s} is outside {} to {}",
            p2p_proto::time::human_duration(min),
            p2p_proto::time::human_duration(max)
        ));
    }
    Ok(d)
}

/// `check-config`: everything `serve` checks before binding, without
/// binding or writing anything.
fn check_config(cli: &Cli) -> Result<()> {
    let cfg = server_config(cli)?;
    if let crate::tls::TlsSource::Files { .. } = &cfg.tls {
        crate::tls::load(&cfg.tls, &cfg.data_dir)?;
    }
    if let Some(db) = &cfg.database {
        // The URL's form only: check-config does not connect.
        let mut config = crate::pg::connection_config(&db.url, "p2p-server")
            .map_err(|e| ServerError::Usage(format!("--database: {e}")))?;
        crate::pg::db_tls(&mut config, db.ca.as_deref())?;
    }
    match &cli.config {
        Some(path) => println!("p2p-server: configuration OK ({})", path.display()),
        None => println!("p2p-server: configuration OK (command line only; no --config)"),
    }
    Ok(())
}

/// The [`ServerConfig`] the parsed command line (with its config file)
/// describes.
pub(crate) fn server_config(cli: &Cli) -> Result<ServerConfig> {
    let args = &cli.serve;
    if let Some(m) = args.metrics_listen.0 {
        let l = args.listen;
        let same_host = m.ip() == l.ip() || m.ip().is_unspecified() || l.ip().is_unspecified();
        if m.port() == l.port() && m.port() != 0 && same_host {
            return Err(ServerError::Config(format!(
                "--metrics-listen {m} would share --listen {l}: metrics are never served on the public port"
            )));
        }
    }
    let mut cfg = ServerConfig::new(data_dir(cli.data_dir.clone())?);
    cfg.max_clients = args.max_clients;
    cfg.open_registration = args.open_registration;
    cfg.login_timeout = args.login_timeout;
    cfg.first_byte_timeout = args.first_byte_timeout;
    cfg.sources = crate::sources::SourceLimits {
        per_address: args.max_unauthenticated_per_address,
        per_network: args.max_unauthenticated_per_network,
    };
    cfg.invite_limits.per_address = args.invites_per_address;
    cfg.invitation_ttl = args.invitation_ttl;
    cfg.idle_timeout = args.idle_timeout;
    cfg.broadcasts = crate::broadcast::BroadcastPolicy {
        ttl: args.broadcast_ttl,
        limit: args.broadcast_limit,
        window: args.broadcast_window,
    };
    cfg.limits = Limits {
        per_source: args.login_failures_per_source,
        per_prefix: args.login_failures_per_prefix,
        global: args.login_failures_global,
        registrations_per_source: args.registrations_per_source,
        registrations_per_prefix: args.registrations_per_prefix,
    };
    cfg.relay = crate::relay::RelayPolicy {
        enabled: !args.no_relay,
        sessions_per_user: args.relay_sessions_per_user,
        bytes_per_sec: args.relay_bytes_per_sec,
        idle: args.relay_idle,
        pair_timeout: args.relay_pair_timeout,
        token_ttl: args.relay_token_ttl,
    };
    cfg.database = cli
        .database
        .clone()
        .map(|url| crate::cluster::ClusterConfig {
            url,
            ca: cli.database_ca.clone(),
            lease: args.presence_lease,
            poll: args.cluster_poll,
        });
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        cfg.tls = TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        };
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flag's written default is the shared constant daemons document.
    #[test]
    fn the_invitation_ttl_default_is_the_shared_constant() {
        let cli = Cli::try_parse_from(["p2p-server"]).unwrap();
        assert_eq!(cli.serve.invitation_ttl, p2p_proto::limits::INVITATION_TTL);
    }

    fn listen(value: &str) -> std::result::Result<SocketAddr, String> {
        let argv = ["p2p-server", "--listen", value].map(OsString::from);
        crate::config_file::parse(&argv)
            .map(|cli| cli.serve.listen)
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn listen_takes_the_forms_login_takes() {
        assert_eq!(listen("127.0.0.1:0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(listen("127.0.0.1").unwrap().to_string(), "127.0.0.1:4400");
        assert_eq!(listen("[::1]:4401").unwrap().to_string(), "[::1]:4401");
        assert_eq!(listen("[::1]").unwrap().to_string(), "[::1]:4400");
        let local = listen("localhost:4402").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 4402, "{local}");
        let bare = listen("localhost").unwrap();
        assert!(bare.ip().is_loopback() && bare.port() == 4400, "{bare}");
        let e = listen("127.0.0.1:99999").unwrap_err();
        assert!(e.contains("99999"), "{e}");
        assert!(listen("h:1:2").is_err());
    }
}
