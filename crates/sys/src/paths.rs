//! Where the daemon's files live by default (SPEC §5), shared with p2pctl so
//! both find the same control socket.
//!
//! Everything follows the XDG variables, so tests and several users on one
//! machine move every path by setting `HOME` / `XDG_*`.

use std::path::PathBuf;

use directories::ProjectDirs;

/// Environment variable that overrides the control socket path for both
/// `p2pd` and `p2pctl`.
pub const SOCKET_ENV: &str = "P2PD_SOCKET";

/// Socket file name inside the runtime directory.
pub const SOCKET_NAME: &str = "p2pd.sock";

fn project() -> Option<ProjectDirs> {
    ProjectDirs::from("", "", "p2p")
}

/// `$XDG_RUNTIME_DIR/p2p/p2pd.sock`.
///
/// Without `XDG_RUNTIME_DIR` (a bare `su` or a cron job) the fallback is
/// `/tmp/p2p-UID/p2pd.sock`: short enough for the 108-byte socket path limit,
/// per user, and the daemon creates the directory 0700 and refuses one it
/// does not own.
pub fn default_socket_path() -> PathBuf {
    match project().and_then(|p| p.runtime_dir().map(|d| d.to_path_buf())) {
        Some(dir) => dir.join(SOCKET_NAME),
        None => fallback_runtime_dir().join(SOCKET_NAME),
    }
}

/// The per-user directory under `/tmp` used when there is no runtime dir.
pub fn fallback_runtime_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("p2p-{uid}"))
}

/// `$XDG_CONFIG_HOME/p2p/p2pd.toml`.
pub fn default_config_file() -> Option<PathBuf> {
    project().map(|p| p.config_dir().join("p2pd.toml"))
}

/// `$XDG_STATE_HOME/p2p` (identity key, pinned fingerprints, resume token).
pub fn default_state_dir() -> Option<PathBuf> {
    project().and_then(|p| p.state_dir().map(|d| d.to_path_buf()))
}
