//! Reading a child's output line by line with a deadline: a blocking
//! `lines().next()` on a pipe hangs the test forever if the line never
//! comes; this reader fails it instead, saying what it waited for. Also
//! running a command to its end within a deadline ([`output_within`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::DEADLINE;

/// Lines of a pipe, read on a thread and received with a deadline.
pub struct Lines {
    rx: mpsc::Receiver<String>,
}

impl Lines {
    /// Starts reading `pipe` (a child's stdout, say) on a thread that ends
    /// when the pipe closes.
    pub fn new(pipe: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx }
    }

    /// The next line, within [`DEADLINE`]; panics naming `what` if none
    /// comes in time or the pipe closed first.
    pub fn next_line(&self, what: &str) -> String {
        self.try_next_line(DEADLINE).unwrap_or_else(|| {
            panic!("no line within {DEADLINE:?} (or output closed) waiting for {what}")
        })
    }

    /// The next line parsed as JSON, within [`DEADLINE`]; panics naming
    /// `what` on timeout, closed output or a line that is not JSON.
    pub fn next_json(&self, what: &str) -> Value {
        let line = self.next_line(what);
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("waiting for {what}: not JSON ({e}): {line}"))
    }

    /// The next line if one comes within `wait`; `None` on timeout or when
    /// the output has closed. For polling inside `wait_for`.
    pub fn try_next_line(&self, wait: Duration) -> Option<String> {
        self.rx.recv_timeout(wait).ok()
    }
}

/// All of `pipe` until it closes, within `deadline`; panics naming `what`
/// if it is still open then (the child did not finish).
pub fn read_to_end_within(
    pipe: impl Read + Send + 'static,
    deadline: Duration,
    what: &str,
) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut pipe = pipe;
        let mut all = Vec::new();
        let _ = pipe.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    rx.recv_timeout(deadline)
        .unwrap_or_else(|_| panic!("output still open after {deadline:?} waiting for {what}"))
}

/// Between checks whether a child whose output has closed has exited too
/// (it normally has: only the instant between closing its pipes at exit and
/// becoming reapable is polled across).
const EXIT_POLL: Duration = Duration::from_millis(1);

/// Runs `cmd` with `stdin` as its input and collects its output, like
/// `Command::output`, but within `deadline`: a child still running then
/// (hung, or waiting for something that never comes) is killed, and the
/// test panics with its command line instead of hanging for ever.
pub(crate) fn output_within(cmd: &mut Command, stdin: &[u8], deadline: Duration) -> Output {
    let line = command_line(cmd);
    let end = Instant::now() + deadline;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
    // On threads, all three: a child that neither reads its input nor
    // exits must not block the writer, and one that fills stderr while we
    // read stdout must not block either of us.
    let mut input = child.stdin.take().expect("stdin is piped");
    let stdin = stdin.to_vec();
    std::thread::spawn(move || {
        // The program may exit before reading stdin (a refused argument).
        let _ = input.write_all(&stdin);
    });
    let stdout = read_on_thread(child.stdout.take().expect("stdout is piped"));
    let stderr = read_on_thread(child.stderr.take().expect("stderr is piped"));
    let give_up = |child: &mut std::process::Child, why: &str| -> ! {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{line}: {why} after {deadline:?}; killed it");
    };
    let left = || end.saturating_duration_since(Instant::now());
    let Ok(stdout) = stdout.recv_timeout(left()) else {
        give_up(&mut child, "still running (stdout open)")
    };
    let Ok(stderr) = stderr.recv_timeout(left()) else {
        give_up(&mut child, "still running (stderr open)")
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < end => std::thread::sleep(EXIT_POLL),
            Ok(None) => give_up(&mut child, "output closed but not exited"),
            Err(e) => panic!("{line}: cannot wait for it: {e}"),
        }
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// All of `pipe`, read on a thread, on a channel once it closes.
fn read_on_thread(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = pipe.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    rx
}

/// `cmd` as a shell would show it (for failure messages).
fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'') {
                format!("{a:?}")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_arrive_in_order_and_silence_is_none_not_a_hang() {
        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        let lines = Lines::new(rx);
        std::io::Write::write_all(&mut tx, b"{\"a\":1}\nsecond\n").unwrap();
        assert_eq!(lines.next_json("the first line")["a"], 1);
        assert_eq!(lines.next_line("the second line"), "second");
        // The writer is still open but silent: no line, and no hang.
        assert_eq!(lines.try_next_line(Duration::from_millis(10)), None);
    }

    #[test]
    #[should_panic(expected = "waiting for the greeting")]
    fn closed_output_panics_naming_what_was_awaited() {
        Lines::new(std::io::empty()).next_line("the greeting");
    }

    /// A command's output, status and input arrive as with `Command::output`.
    #[test]
    fn output_within_collects_what_the_child_wrote() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; echo oops >&2; exit 3"]);
        let out = output_within(&mut cmd, b"in\n", Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            (out.stdout.as_slice(), out.stderr.as_slice()),
            (&b"in\n"[..], &b"oops\n"[..])
        );
    }

    /// A child that never exits is killed when the deadline passes, and the
    /// test fails naming its command line (instead of hanging for ever).
    #[test]
    fn a_child_that_never_exits_is_killed_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        // `sh` notes its pid, then becomes `sleep` (exec): that pid is the
        // process that must be killed.
        let script = format!("echo $$ > {}; exec sleep 1000", pid_file.display());
        let run = std::panic::catch_unwind(|| {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &script]);
            output_within(&mut cmd, b"", Duration::from_secs(2))
        });
        let failure = run.expect_err("a hung child must fail the test");
        let message = failure
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(
            message.contains(&format!("sh -c {script:?}")) && message.contains("killed it"),
            "{message}"
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("the child started")
            .trim()
            .parse()
            .unwrap();
        // Killed and reaped: no such process any more.
        let probe = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
        assert_eq!(probe, Err(nix::errno::Errno::ESRCH), "pid {pid}");
    }
}
