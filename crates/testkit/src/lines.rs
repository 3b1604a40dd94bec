//! Reading a child's output line by line with a deadline: a blocking
//! `lines().next()` on a pipe hangs the test forever if the line never
//! comes; this reader fails it instead, saying what it waited for.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc;
use std::time::Duration;

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
}
