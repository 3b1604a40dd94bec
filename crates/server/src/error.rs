//! The server crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the server and its admin commands.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad input on the command line or stdin (no terminal to ask a
    /// password on, passwords that differ): exit 2, like p2pctl.
    #[error("{0}")]
    Usage(String),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// Which file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// `users.csv` is not in the expected format.
    #[error("{path}: {message}")]
    UserFile {
        /// Which file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// A user name or password breaks the rules.
    #[error("{0}")]
    Name(#[from] p2p_proto::names::NameError),
    /// `user add` for a name that exists.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// An admin command for a name that does not exist.
    #[error("no such user {0:?}")]
    NoSuchUser(String),
    /// Hashing failed (should not happen with valid parameters).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// TLS material could not be loaded or generated.
    #[error("TLS: {0}")]
    Tls(String),
    /// The state database failed.
    #[error("state database {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// What happened.
        source: rusqlite::Error,
    },
    /// The shared PostgreSQL backend failed (SPEC §9).
    #[error("{0}")]
    Pg(#[from] crate::pg::PgError),
    /// A file in the data directory is damaged; the server will not guess.
    #[error("{path}: {problem}")]
    Damaged {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong and what to do about it.
        problem: String,
    },
    /// A message could not be encoded (should not happen: our own types).
    #[error("cannot encode a message: {0}")]
    Encode(#[from] p2p_proto::ProtoError),
    /// Bad command-line or configuration value.
    #[error("{0}")]
    Config(String),
    /// Socket-level failure (binding, accepting).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ServerError {
    /// Wraps an I/O error with the path it concerns.
    pub fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ServerError {
        let path = path.into();
        move |source| ServerError::File { path, source }
    }
}

/// Result with [`ServerError`].
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
