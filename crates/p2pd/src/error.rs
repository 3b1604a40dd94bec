//! The daemon crate's one error type.

use std::path::PathBuf;

/// Failures that stop the daemon from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A state or config file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// Which file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// A config or state file has bad contents.
    #[error("{path}: {message}")]
    Format {
        /// Which file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Another daemon already serves the control socket.
    #[error("another p2pd is already running on {0} (stop it first, or use --socket)")]
    AlreadyRunning(PathBuf),
    /// Another daemon holds the state directory (it would share our
    /// identity and saved session and take the account over).
    #[error("{0}: another p2pd is already running with this state directory; stop it first, or give this one its own --state-dir")]
    StateInUse(#[from] p2p_sys::dirlock::LockError),
    /// The control socket directory is not safe to use.
    #[error("{0}")]
    Unsafe(String),
    /// A listener could not be bound.
    #[error("cannot listen on {what}: {source}")]
    Bind {
        /// Which listener.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// A file operation sent to the blocking pool did not finish (it
    /// panicked, or the runtime is shutting down).
    #[error("blocking file task failed: {0}")]
    Blocking(#[from] tokio::task::JoinError),
}

impl DaemonError {
    /// Wraps an I/O error with the path it concerns.
    pub fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DaemonError {
        let path = path.into();
        move |source| DaemonError::File { path, source }
    }
}

/// Result with [`DaemonError`].
pub type Result<T, E = DaemonError> = std::result::Result<T, E>;
