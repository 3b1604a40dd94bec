//! Configuration: `p2pd.toml` (every key optional), then command-line flags,
//! then `P2PD_SOCKET` for the socket; defaults follow XDG (SPEC §5).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{DaemonError, Result};

/// First reconnect delay (before jitter); doubles per failed attempt.
pub(crate) const DEFAULT_RECONNECT_MIN: Duration = Duration::from_secs(1);
/// Reconnect delay cap: after reaching it the daemon keeps trying forever at
/// this interval (SPEC §5: at least five tries in ten minutes).
pub(crate) const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(60);

/// The file's keys (see `docs/config.md`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Control socket path.
    pub(crate) socket: Option<PathBuf>,
    /// State directory.
    pub(crate) state_dir: Option<PathBuf>,
    /// Peer listener address.
    pub(crate) peer_listen: Option<SocketAddr>,
    /// Address to give peers instead of the one the server sees.
    pub(crate) advertise: Option<SocketAddr>,
    /// Log level or filter.
    pub(crate) log_level: Option<String>,
    /// First reconnect delay, e.g. "1s".
    #[serde(default, with = "humantime_serde_opt")]
    pub(crate) reconnect_min: Option<Duration>,
    /// Reconnect delay cap, e.g. "60s".
    #[serde(default, with = "humantime_serde_opt")]
    pub(crate) reconnect_max: Option<Duration>,
    /// Users whose invitations are accepted without asking.
    #[serde(default)]
    pub(crate) auto_accept: Vec<String>,
    /// Peer handshakes in progress at once from one address.
    pub(crate) peer_handshakes_per_source: Option<usize>,
    /// Desktop notifications for invitations (default on).
    pub(crate) notify: Option<bool>,
    /// Server(s) for `login` without `--server`: one address, a comma list,
    /// or a TOML list (the instances of one cluster, SPEC §9).
    pub(crate) server: Option<ServerList>,
}

/// `server = "a:4400,b:4400"` or `server = ["a:4400", "b:4400"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ServerList {
    /// One address or a comma-separated list.
    Text(String),
    /// One address per entry.
    List(Vec<String>),
}

impl ServerList {
    /// The checked list, `host:port,host:port`.
    fn resolve(&self) -> Result<String> {
        let text = match self {
            ServerList::Text(s) => s.clone(),
            ServerList::List(v) => v.join(","),
        };
        p2p_proto::address::parse_server_list(&text)
            .map_err(|e| DaemonError::Config(format!("server: {e}")))
    }
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| p2p_proto::time::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The daemon's effective configuration.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Control socket path.
    pub(crate) socket: PathBuf,
    /// Identity key, pins, saved session.
    pub(crate) state_dir: PathBuf,
    /// Peer listener address (default: all addresses, ephemeral port).
    pub(crate) peer_listen: SocketAddr,
    /// Address given to peers instead of the one the server sees.
    pub(crate) advertise: Option<SocketAddr>,
    /// Log filter.
    pub(crate) log_level: Option<String>,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Reconnect delay cap.
    pub reconnect_max: Duration,
    /// Users whose invitations are accepted without asking.
    pub(crate) auto_accept: Vec<String>,
    /// Peer handshakes in progress at once from one address (IPv4, or IPv6
    /// /64); at least 1.
    pub(crate) peer_handshakes_per_source: usize,
    /// Show a desktop notification for each invitation that waits for an
    /// answer (see `notify.rs`).
    pub(crate) notify: bool,
    /// Server(s) `login` uses without `--server` while no session is saved
    /// (`host:port,host:port`).
    pub(crate) server: Option<String>,
}

/// Flag values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--socket` / `P2PD_SOCKET`.
    pub socket: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--peer-listen`.
    pub peer_listen: Option<SocketAddr>,
    /// `--advertise`.
    pub advertise: Option<SocketAddr>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--peer-handshakes-per-source`.
    pub peer_handshakes_per_source: Option<usize>,
}

fn read_file(path: &Path, required: bool) -> Result<FileConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| DaemonError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(FileConfig::default())
        }
        Err(e) => Err(DaemonError::file(path)(e)),
    }
}

impl DaemonConfig {
    /// Resolves the configuration from flags, file and defaults.
    pub fn resolve(o: Overrides) -> Result<Self> {
        let file = match (&o.config, p2p_sys::paths::default_config_file()) {
            (Some(p), _) => read_file(p, true)?,
            (None, Some(p)) => read_file(&p, false)?,
            (None, None) => FileConfig::default(),
        };
        let state_dir = o
            .state_dir
            .or(file.state_dir)
            .or_else(p2p_sys::paths::default_state_dir)
            .ok_or_else(|| DaemonError::Config("no home directory; pass --state-dir".into()))?;
        let reconnect_min = file.reconnect_min.unwrap_or(DEFAULT_RECONNECT_MIN);
        let reconnect_max = file
            .reconnect_max
            .unwrap_or(DEFAULT_RECONNECT_MAX)
            .max(reconnect_min);
        let peer_handshakes_per_source = o
            .peer_handshakes_per_source
            .or(file.peer_handshakes_per_source)
            .unwrap_or(crate::peer::DEFAULT_HANDSHAKES_PER_SOURCE);
        if peer_handshakes_per_source == 0 {
            return Err(DaemonError::Config(
                "peer_handshakes_per_source must be at least 1".into(),
            ));
        }
        let server = file.server.as_ref().map(ServerList::resolve).transpose()?;
        let log_level = o.log_level.or(file.log_level);
        if let Some(level) = &log_level {
            p2p_sys::logging::parse_log_level(level).map_err(DaemonError::Config)?;
        }
        Ok(DaemonConfig {
            socket: o
                .socket
                .or(file.socket)
                .unwrap_or_else(p2p_sys::paths::default_socket_path),
            state_dir,
            peer_listen: o
                .peer_listen
                .or(file.peer_listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            advertise: o.advertise.or(file.advertise),
            log_level,
            reconnect_min,
            reconnect_max,
            auto_accept: file.auto_accept,
            peer_handshakes_per_source,
            notify: file.notify.unwrap_or(true),
            server,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2pd.toml");
        std::fs::write(
            &path,
            "peer_listen = \"127.0.0.1:5000\"\nreconnect_max = \"5s\"\nstate_dir = \"/x\"\n",
        )
        .unwrap();
        let cfg = DaemonConfig::resolve(Overrides {
            config: Some(path.clone()),
            state_dir: Some("/y".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(cfg.peer_listen, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(cfg.reconnect_max, Duration::from_secs(5));
        assert_eq!(cfg.state_dir, PathBuf::from("/y"));
        assert_eq!(
            cfg.peer_handshakes_per_source,
            crate::peer::DEFAULT_HANDSHAKES_PER_SOURCE
        );

        std::fs::write(&path, "peer_handshakes_per_source = 40\n").unwrap();
        let resolve = |flag| {
            DaemonConfig::resolve(Overrides {
                config: Some(path.clone()),
                state_dir: Some("/y".into()),
                peer_handshakes_per_source: flag,
                ..Default::default()
            })
        };
        assert_eq!(resolve(None).unwrap().peer_handshakes_per_source, 40);
        assert_eq!(resolve(Some(3)).unwrap().peer_handshakes_per_source, 3);
        assert!(resolve(Some(0)).is_err(), "0 would refuse every peer");

        std::fs::write(&path, "peer_lisen = \"x\"\n").unwrap();
        let err = DaemonConfig::resolve(Overrides {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("peer_lisen"), "{err}");
    }

    /// `server` takes one address, a comma list or a TOML list, each entry
    /// checked and given its default port; a typo is refused at start.
    #[test]
    fn server_lists_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2pd.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).unwrap();
            DaemonConfig::resolve(Overrides {
                config: Some(path.clone()),
                state_dir: Some("/y".into()),
                ..Default::default()
            })
        };
        assert_eq!(resolve("").unwrap().server, None);
        assert_eq!(
            resolve("server = \"a, b:5\"\n").unwrap().server.as_deref(),
            Some("a:4400,b:5")
        );
        assert_eq!(
            resolve("server = [\"a:1\", \"b\"]\n")
                .unwrap()
                .server
                .as_deref(),
            Some("a:1,b:4400")
        );
        let err = resolve("server = \"a,b:99999\"\n").unwrap_err();
        assert!(err.to_string().contains("server"), "{err}");
        assert!(resolve("server = 5\n").is_err());
    }

    #[test]
    fn the_packaged_example_sets_every_key() {
        // Uncommented, packaging/p2pd.toml.example must parse (no unknown
        // key) and set every key the file accepts.
        let text: String = include_str!("../../../packaging/p2pd.toml.example")
            .lines()
            .filter_map(|l| l.strip_prefix('#').filter(|l| l.contains(" = ")))
            .map(|l| format!("{l}\n"))
            .collect();
        let f: FileConfig = toml::from_str(&text).unwrap();
        assert!(f.socket.is_some() && f.state_dir.is_some() && f.peer_listen.is_some());
        assert!(f.advertise.is_some() && f.log_level.is_some());
        assert!(f.reconnect_min.is_some() && f.reconnect_max.is_some());
        assert!(!f.auto_accept.is_empty() && f.peer_handshakes_per_source.is_some());
        assert!(f.notify.is_some() && f.server.is_some());
        let level = f.log_level.unwrap();
        assert!(p2p_sys::logging::parse_log_level(&level).is_ok());
    }
}
