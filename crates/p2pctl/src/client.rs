//! A blocking control-protocol client: p2pctl is short-lived and does one
//! thing, so plain std sockets keep it small and quick to start.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use p2p_proto::ctl::{Command, CtlError, DaemonHello, Event, Greeting, Request, Response};
use p2p_proto::limits::{CTL_VERSION, MAX_CTL_RESPONSE};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::hints::Hints;
use crate::Failure;

/// A connection to the daemon.
pub(crate) struct Client {
    reader: BufReader<std::io::Take<UnixStream>>,
    writer: UnixStream,
    next_id: u64,
    hello: DaemonHello,
}

/// Opens connections for one command, printing the greeting's [`Hints`]
/// once (with the first connection) so every command tells the same way.
pub(crate) struct Connector {
    path: PathBuf,
    hints: Hints,
    json: bool,
    shown: std::cell::Cell<bool>,
}

impl Connector {
    /// For the socket at `path`; `hints` are the command's.
    pub(crate) fn new(path: PathBuf, hints: Hints, json: bool) -> Self {
        Connector {
            path,
            hints,
            json,
            shown: std::cell::Cell::new(false),
        }
    }

    /// Connects (see [`Client::connect`]); the first time, prints the hints.
    pub(crate) fn connect(&self) -> Result<Client, Failure> {
        let client = Client::connect(&self.path)?;
        if !self.shown.replace(true) {
            self.hints.show(&client.hello, self.json);
        }
        Ok(client)
    }
}

impl Client {
    /// Connects and checks the daemon's greeting.
    pub(crate) fn connect(path: &Path) -> Result<Client, Failure> {
        let stream =
            UnixStream::connect(path).map_err(|e| Failure::NoDaemon(path.to_path_buf(), e))?;
        let writer = stream
            .try_clone()
            .map_err(|e| Failure::NoDaemon(path.to_path_buf(), e))?;
        let mut client = Client {
            reader: BufReader::new(stream.take(u64::MAX)),
            writer,
            next_id: 0,
            hello: DaemonHello {
                protocol: 0,
                daemon: String::new(),
                pending: Vec::new(),
                key_changed: Vec::new(),
            },
        };
        let line = client.read_line()?;
        let greeting: Greeting =
            serde_json::from_str(&line).map_err(|_| {
                match serde_json::from_str::<Response<serde_json::Value>>(&line) {
                    Ok(Response { error: Some(e), .. }) => Failure::Ctl(e),
                    _ => Failure::Other(format!("{} is not a p2pd control socket", path.display())),
                }
            })?;
        if greeting.hello.protocol != CTL_VERSION {
            return Err(Failure::Other(format!(
                "p2pd {} speaks control protocol {} but this p2pctl speaks {CTL_VERSION}: restart the daemon \
                 after upgrading (systemctl --user restart p2pd)",
                greeting.hello.daemon, greeting.hello.protocol
            )));
        }
        client.hello = greeting.hello;
        Ok(client)
    }

    /// Reads one line, bounded by [`MAX_CTL_RESPONSE`].
    pub(crate) fn read_line(&mut self) -> Result<String, Failure> {
        self.reader.get_mut().set_limit(MAX_CTL_RESPONSE as u64 + 1);
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(Failure::Other(
                "p2pd closed the connection (did it stop?)".into(),
            )),
            Ok(_) if !line.ends_with('\n') => Err(Failure::Other(
                "p2pd sent an over-long or cut-off line".into(),
            )),
            Ok(_) => Ok(line),
            Err(e) => Err(Failure::Other(format!("reading from p2pd failed: {e}"))),
        }
    }

    /// Sends a command and returns its result, decoded as `T`: the result
    /// type of that command (`status` → `StatusReport`, ...; see
    /// [`p2p_proto::ctl::reply`]).
    pub(crate) fn call<T: DeserializeOwned>(&mut self, cmd: Command) -> Result<T, Failure> {
        let id = self.request(cmd)?;
        self.answer(id)
    }

    /// Sends a command without waiting for its answer; returns its id for
    /// [`Client::answer`].
    fn request(&mut self, cmd: Command) -> Result<u64, Failure> {
        let (id, line) = self.encode(cmd);
        self.writer
            .write_all(&line)
            .map_err(|e| Failure::Other(format!("writing to p2pd failed: {e}")))?;
        Ok(id)
    }

    /// A command as its request line, with the id [`Client::answer`] takes.
    pub(crate) fn encode(&mut self, cmd: Command) -> (u64, Vec<u8>) {
        self.next_id += 1;
        let id = self.next_id;
        let mut line = serde_json::to_vec(&Request { id, cmd }).expect("requests serialise");
        line.push(b'\n');
        (id, line)
    }

    /// A writer of request lines on its own thread, so requests can be sent
    /// while answers are read (pipelining): otherwise p2pctl writing a long
    /// request while the daemon writes a long answer would block both. The
    /// daemon answers in request order. A failed write shuts the connection
    /// down, so the reader sees the end instead of waiting.
    pub(crate) fn pipeline(&self) -> Result<mpsc::Sender<Vec<u8>>, Failure> {
        let mut out = self
            .writer
            .try_clone()
            .map_err(|e| Failure::Other(format!("cannot write to p2pd: {e}")))?;
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            for line in rx {
                if out.write_all(&line).is_err() {
                    let _ = out.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        });
        Ok(tx)
    }

    /// Waits for the answer to request `id`, decoded as `T` (see
    /// [`Client::call`]); answers to other requests before it are skipped.
    pub(crate) fn answer<T: DeserializeOwned>(&mut self, id: u64) -> Result<T, Failure> {
        loop {
            let line = self.read_line()?;
            // Only the envelope first: a line for another request need not
            // be a `T`. The result is skipped, not built (as a
            // `serde_json::Value` it was a map per entry: most of p2pctl's
            // CPU in `send -`, whose answers list 16 384 messages).
            let resp: Response<serde::de::IgnoredAny> = serde_json::from_str(&line)
                .map_err(|e| Failure::Other(format!("unreadable answer from p2pd: {e}")))?;
            if resp.id != id {
                // Id 0 with an error: the daemon could not read our request
                // at all (too long, not JSON) — it will never answer it.
                if let (0, Some(e)) = (resp.id, resp.error) {
                    return Err(Failure::Ctl(e));
                }
                continue;
            }
            if let Some(e) = resp.error {
                return Err(Failure::Ctl(e));
            }
            let resp: Response<T> = serde_json::from_str(&line).map_err(unexpected)?;
            return match resp.result {
                Some(result) => Ok(result),
                None => T::deserialize(serde_json::Value::Null).map_err(unexpected),
            };
        }
    }
}

impl Client {
    /// After `watch` or `inbox --follow`: the next event line, decoded.
    pub(crate) fn next_event(&mut self) -> Result<EventLine, Failure> {
        let line = self.read_line()?;
        EventLine::parse(&line)
            .map_err(|e| Failure::Other(format!("unreadable event from p2pd: {e}")))
    }
}

/// One event line from the daemon.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EventLine {
    /// An [`Event`] this p2pctl knows.
    Known(Event),
    /// A JSON object that is not one (a newer daemon's kind or field
    /// value): shown as it came, never dropped.
    Unknown(serde_json::Value),
}

impl EventLine {
    /// Decodes one line; an error only if it is not JSON at all.
    pub(crate) fn parse(line: &str) -> Result<EventLine, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(line)?;
        Ok(match Event::deserialize(&value) {
            Ok(event) => EventLine::Known(event),
            Err(_) => EventLine::Unknown(value),
        })
    }
}

/// Builds a [`CtlError`]-carrying failure for a result that did not parse.
pub(crate) fn unexpected(e: impl std::fmt::Display) -> Failure {
    Failure::Ctl(CtlError::new(
        p2p_proto::ctl::ErrorCode::Internal,
        format!("unexpected result from p2pd: {e}"),
    ))
}

/// The socket path from the flag/env or the default.
pub(crate) fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(p2p_sys::paths::default_socket_path)
}
