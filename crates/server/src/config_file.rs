//! `--config FILE` (SPEC §12): a TOML file with one key per command-line
//! flag, named like the flag in snake_case (`listen`, `data_dir`,
//! `broadcast_limit`, ...).
//!
//! The file is turned into the flags it stands for and parsed by the same
//! clap definitions as the command line, so every flag is a key, with the
//! same value syntax and the same checks, and a flag added later needs no
//! change here. The file's flags come first and the command line's after;
//! `args_override_self` on [`Cli`] makes the later one win, so a flag on
//! the command line beats the file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, CommandFactory, Parser};

use crate::cli::Cli;

/// Flags that are not configuration: `--config` names the file itself.
const NOT_KEYS: [&str; 3] = ["config", "help", "version"];

/// Largest config file read; a real one is a few kilobytes.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// Not TOML, or a key or value that is not allowed.
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// The keys a config file may have, sorted: one per flag of the server
/// (including the global `data_dir` and `log_level`).
pub(crate) fn known_keys() -> Vec<String> {
    let cmd = Cli::command();
    let mut keys: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_KEYS.contains(&a.get_id().as_str()))
        .map(|a| a.get_id().to_string())
        .collect();
    keys.sort();
    keys
}

/// Parses the command line `argv` (program name first) with the file named
/// by its `--config`, if any, under it. Clap's own errors (`--help`, a bad
/// flag on the command line) come back as `Err(Left)`; a bad file as
/// `Err(Right)`.
pub(crate) fn parse(argv: &[OsString]) -> Result<Cli, Either> {
    let path = match config_flag(argv) {
        Some(path) if !asks_for_help(argv) => path,
        _ => return Cli::try_parse_from(argv).map_err(Either::Clap),
    };
    let file_args = file_args(&path).map_err(Either::Config)?;
    let program = argv.first().cloned().unwrap_or_else(|| "p2p-server".into());
    let merged = std::iter::once(program.clone())
        .chain(file_args.iter().cloned())
        .chain(argv.iter().skip(1).cloned());
    let e = match Cli::try_parse_from(merged) {
        Ok(cli) => return Ok(cli),
        Err(e) => e,
    };
    // Whose mistake: the file's if the file alone fails too (other than
    // by a flag pair split between the file and the command line).
    let alone = std::iter::once(program).chain(file_args);
    match Cli::try_parse_from(alone) {
        Err(fe) if fe.kind() != clap::error::ErrorKind::MissingRequiredArgument => {
            Err(Either::Config(invalid(&path, clap_message(&fe))))
        }
        _ => Err(Either::Clap(e)),
    }
}

/// The value of the last `--config` in `argv`, found before clap runs
/// (the file's flags must be in place for clap's checks).
fn config_flag(argv: &[OsString]) -> Option<PathBuf> {
    let mut found = None;
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            found = args.next().map(PathBuf::from);
        } else if let Some(v) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            found = Some(PathBuf::from(v));
        }
    }
    found
}

/// `--help` or `--version` anywhere: answered without reading the file.
fn asks_for_help(argv: &[OsString]) -> bool {
    argv.iter()
        .skip(1)
        .any(|a| ["-h", "--help", "-V", "--version"].contains(&a.to_str().unwrap_or("")))
}

/// Either error of [`parse`].
#[derive(Debug)]
pub(crate) enum Either {
    /// From clap: print it with `exit()` (help, version, usage errors).
    Clap(clap::Error),
    /// From the config file.
    Config(ConfigError),
}

/// The flags the config file at `path` stands for.
pub(crate) fn file_args(path: &Path) -> Result<Vec<OsString>, ConfigError> {
    let text = read_limited(path)?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| invalid(path, e.to_string().trim_end().to_string()))?;
    let cmd = Cli::command();
    let mut args = Vec::new();
    for (key, value) in &table {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == key.as_str() && !NOT_KEYS.contains(&key.as_str()))
            .filter(|a| a.get_long().is_some())
            .ok_or_else(|| {
                invalid(
                    path,
                    format!(
                        "unknown key {key:?}; valid keys: {}",
                        known_keys().join(", ")
                    ),
                )
            })?;
        let flag = format!("--{}", arg.get_long().unwrap_or_default());
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        match (value, switch) {
            (toml::Value::Boolean(true), true) => args.push(flag.into()),
            (toml::Value::Boolean(false), true) => {}
            (_, true) => return Err(invalid(path, format!("{key} must be true or false"))),
            (toml::Value::String(s), false) => args.push(format!("{flag}={s}").into()),
            (toml::Value::Integer(n), false) => args.push(format!("{flag}={n}").into()),
            (_, false) => {
                return Err(invalid(
                    path,
                    format!("{key} must be a string or a whole number (as on the command line)"),
                ))
            }
        }
    }
    Ok(args)
}

fn read_limited(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let read = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(read)?
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(invalid(
            path,
            format!("larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    Ok(text)
}

fn invalid(path: &Path, message: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    }
}

/// The first line of a clap error, without its "error: " prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2p-server.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn argv(extra: &[&str]) -> Vec<OsString> {
        std::iter::once("p2p-server")
            .chain(extra.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn every_flag_is_a_key_and_the_command_line_wins() {
        let (_d, path) = write(
            "listen = \"127.0.0.1:4500\"\nbroadcast_limit = 7\nbroadcast_ttl = \"5m\"\n\
             open_registration = true\nno_relay = false\nlog_level = \"warn\"\n",
        );
        let p = path.to_str().unwrap();
        let cli = parse(&argv(&["--config", p])).unwrap();
        assert_eq!(cli.serve.listen.to_string(), "127.0.0.1:4500");
        assert_eq!(cli.serve.broadcast_limit, 7);
        assert_eq!(cli.serve.broadcast_ttl.as_secs(), 300);
        assert!(cli.serve.open_registration);
        assert!(!cli.serve.no_relay);
        assert_eq!(cli.log_level.as_deref(), Some("warn"));

        let cli = parse(&argv(&["--broadcast-limit", "9", "--config", p])).unwrap();
        assert_eq!(cli.serve.broadcast_limit, 9, "the flag beats the file");
        assert_eq!(cli.serve.listen.to_string(), "127.0.0.1:4500");

        // A flag pair split between the file and the command line.
        let (_d, path) = write("tls_cert = \"/etc/cert.pem\"\n");
        let p = format!("--config={}", path.display());
        let cli = parse(&argv(&[&p, "--tls-key", "/etc/key.pem"])).unwrap();
        assert!(cli.serve.tls_cert.is_some() && cli.serve.tls_key.is_some());
        match parse(&argv(&[&p])) {
            Err(Either::Clap(e)) => assert!(e.to_string().contains("--tls-key"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_the_valid_ones_listed() {
        let (_d, path) = write("broadcast_limt = 3\n");
        let e = match parse(&argv(&["--config", path.to_str().unwrap()])) {
            Err(Either::Config(e)) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(e.contains("unknown key \"broadcast_limt\""), "{e}");
        for key in [
            "broadcast_limit",
            "data_dir",
            "listen",
            "relay_idle",
            "max_clients",
        ] {
            assert!(e.contains(key), "{key} missing from {e}");
        }
        assert!(!e.contains("config,"), "{e}");
    }

    #[test]
    fn bad_values_name_the_file_and_the_flag() {
        for (text, want) in [
            ("broadcast_limit = \"many\"\n", "--broadcast-limit"),
            ("open_registration = \"yes\"\n", "true or false"),
            ("max_clients = 1.5\n", "whole number"),
            ("listen = ", "listen"),
        ] {
            let (_d, path) = write(text);
            let e = match parse(&argv(&["--config", path.to_str().unwrap()])) {
                Err(Either::Config(e)) => e.to_string(),
                other => panic!("{text}: {other:?}"),
            };
            assert!(e.starts_with("config "), "{e}");
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
