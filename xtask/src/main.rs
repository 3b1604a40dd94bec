//! Release helpers, run as `cargo run -p xtask -- TASK` (the cargo "xtask"
//! convention: plain Rust instead of a shell build script).
//!
//! `dist OUTDIR` writes what a package ships besides the binaries, generated
//! from the same clap definitions the programs parse their arguments with,
//! so a page or completion can never describe a flag that does not exist:
//!
//! ```text
//! OUTDIR/man/man1/p2p-server.1, p2p-server-user.1, ... (one per subcommand)
//! OUTDIR/man/man1/p2pd.1
//! OUTDIR/man/man1/p2pctl.1, p2pctl-login.1, ...
//! OUTDIR/completions/bash/p2pctl, p2pd, p2p-server
//! OUTDIR/completions/zsh/_p2pctl, _p2pd, _p2p-server
//! OUTDIR/completions/fish/p2pctl.fish, p2pd.fish, p2p-server.fish
//! ```
//!
//! Each program's main page also has EXIT STATUS, FILES, ENVIRONMENT,
//! SIGNALS and EXAMPLES ([`sections`]); p2pctl's completions offer user
//! names from the daemon ([`p2pctl::complete`]).
//!
//! The file names are the ones each shell looks up on its own, so
//! `make install` copies the directories as they are.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

mod sections;

/// Name of the manual the pages belong to (the centre of their header line).
pub const MANUAL: &str = "p2p-broadcast manual";

/// Set by reproducible-build tooling: the date to stamp instead of today.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The shells completions are written for: the directory, and the file
/// name each one loads for PROGRAM from it.
pub const COMPLETIONS: [(Shell, &str, &str); 3] = [
    (Shell::Bash, "bash", "PROGRAM"),
    (Shell::Zsh, "zsh", "_PROGRAM"),
    (Shell::Fish, "fish", "PROGRAM.fish"),
];

const USAGE: &str = "usage: cargo run -p xtask -- dist OUTDIR

  dist OUTDIR   write man pages (OUTDIR/man/man1) for p2p-server, p2pd and
                p2pctl, and their completions (OUTDIR/completions/{bash,zsh,fish})";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["dist", out] => match dist(Path::new(out)) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("xtask: {e:#}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Writes the man pages and completions under `out`; returns the files
/// written.
pub fn dist(out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man1 = out.join("man/man1");
    create_dir(&man1)?;
    let date = page_date()?;
    for cmd in [
        p2p_server::cli::Cli::command(),
        p2pd::cli::Cli::command(),
        p2pctl::cli::Cli::command(),
    ] {
        // As clap_mangen::generate_to, which does not let us name the manual.
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        man_pages(cmd, &man1, &date, &mut written)?;
    }
    for (shell, dir, file) in COMPLETIONS {
        let dir = out.join("completions").join(dir);
        create_dir(&dir)?;
        for (program, mut cmd) in [
            ("p2pctl", p2pctl::cli::Cli::command()),
            ("p2pd", p2pd::cli::Cli::command()),
            ("p2p-server", p2p_server::cli::Cli::command()),
        ] {
            let path = dir.join(file.replace("PROGRAM", program));
            let buf = if program == "p2pctl" {
                p2pctl::complete::script(shell)
            } else {
                let mut buf = Vec::new();
                clap_complete::generate(shell, &mut cmd, program, &mut buf);
                buf
            };
            std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// One page for `cmd` and one per visible subcommand, recursively.
fn man_pages(cmd: clap::Command, dir: &Path, date: &str, written: &mut Vec<PathBuf>) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        man_pages(sub, dir, date, written)?;
    }
    // A date is needed, not only nice: clap_mangen writes an empty one
    // unquoted, which shifts the manual name out of the header.
    let extra = sections::for_program(cmd.get_name()).map(sections::render);
    let page = clap_mangen::Man::new(cmd).date(date).manual(MANUAL);
    let path = dir.join(page.get_filename());
    let mut roff = Vec::new();
    page.render(&mut roff)
        .with_context(|| format!("rendering {}", path.display()))?;
    let mut text = String::from_utf8(roff).context("man page is not UTF-8")?;
    if let Some(extra) = extra {
        text = sections::splice(&text, &extra);
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    Ok(())
}

/// `YYYY-MM-DD` of `$SOURCE_DATE_EPOCH` when set (reproducible builds),
/// else today.
fn page_date() -> Result<String> {
    let when = match std::env::var(SOURCE_DATE_EPOCH) {
        Ok(secs) => {
            let secs: u64 = secs
                .trim()
                .parse()
                .with_context(|| format!("{SOURCE_DATE_EPOCH}={secs:?} is not a number"))?;
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
        }
        Err(_) => std::time::SystemTime::now(),
    };
    Ok(humantime::format_rfc3339_seconds(when).to_string()[..10].to_string())
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn dist_writes_pages_for_every_program_and_completions_for_every_shell() {
        let out = tempfile::tempdir().unwrap();
        let files = dist(out.path()).unwrap();
        let man1 = out.path().join("man/man1");
        for (program, flag) in [
            ("p2p-server", "\\-\\-data\\-dir"),
            ("p2pd", "\\-\\-peer\\-listen"),
            ("p2pctl", "\\-\\-socket"),
        ] {
            let page = read(&man1.join(format!("{program}.1")));
            let th = page.lines().find(|l| l.starts_with(".TH ")).unwrap();
            // Five arguments, the manual name last (man shows it centred).
            assert!(th.starts_with(&format!(".TH {program} 1 ")), "{th}");
            assert!(th.ends_with(&format!("\"{MANUAL}\"")), "{th}");
            let date = th.split(' ').nth(3).unwrap_or_default();
            assert!(
                date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
                "date argument: {th}"
            );
            assert!(page.contains(flag), "{program}.1 lacks {flag}:\n{page}");
        }
        // Subcommands get their own pages (man p2pctl-login).
        assert!(read(&man1.join("p2pctl-login.1")).contains("\\-\\-password\\-stdin"));
        assert!(!man1.join("p2pctl-help.1").exists());

        for program in ["p2p-server", "p2pd", "p2pctl"] {
            let page = read(&man1.join(format!("{program}.1")));
            for section in ["EXIT STATUS", "FILES", "ENVIRONMENT", "SIGNALS", "EXAMPLES"] {
                assert!(
                    page.contains(&format!(".SH \"{section}\"")),
                    "{program}.1 lacks {section}"
                );
            }
            assert!(!page.contains(".SH EXTRA"), "{program}.1");
            for (dir, file) in [
                ("bash", program.to_string()),
                ("zsh", format!("_{program}")),
                ("fish", format!("{program}.fish")),
            ] {
                let script = read(&out.path().join("completions").join(dir).join(file));
                assert!(script.contains(program), "{dir} {program}");
            }
        }
        let ctl = read(&man1.join("p2pctl.1"));
        assert!(ctl.contains("p2pd is not running"), "exit codes kept");
        assert!(!man1.join("p2pctl-__users.1").exists(), "hidden command");
        let bash = read(&out.path().join("completions/bash/p2pctl"));
        assert!(
            bash.contains("p2pctl __users"),
            "user names from the daemon"
        );
        assert!(bash.contains("complete -F _p2pctl"), "{bash}");
        assert!(bash.contains("login"), "{bash}");
        assert!(read(&out.path().join("completions/zsh/_p2pctl")).starts_with("#compdef p2pctl"));
        assert!(
            read(&out.path().join("completions/fish/p2pctl.fish")).contains("complete -c p2pctl")
        );
        assert!(files.iter().all(|f| f.starts_with(out.path())));
    }
}
