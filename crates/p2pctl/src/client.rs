//! A blocking control-protocol client: p2pctl is short-lived and does one
//! thing, so plain std sockets keep it small and quick to start.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use p2p_proto::ctl::{Command, CtlError, Greeting, Request, Response};
use p2p_proto::limits::{CTL_VERSION, MAX_CTL_RESPONSE};

use crate::Failure;

/// A connection to the daemon.
pub struct Client {
    reader: BufReader<std::io::Take<UnixStream>>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    /// Connects and checks the daemon's greeting.
    pub fn connect(path: &Path) -> Result<Client, Failure> {
        let stream =
            UnixStream::connect(path).map_err(|e| Failure::NoDaemon(path.to_path_buf(), e))?;
        let writer = stream
            .try_clone()
            .map_err(|e| Failure::NoDaemon(path.to_path_buf(), e))?;
        let mut client = Client {
            reader: BufReader::new(stream.take(u64::MAX)),
            writer,
            next_id: 0,
        };
        let line = client.read_line()?;
        let greeting: Greeting =
            serde_json::from_str(&line).map_err(|_| {
                match serde_json::from_str::<Response>(&line) {
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
        Ok(client)
    }

    /// Reads one line, bounded by [`MAX_CTL_RESPONSE`].
    pub fn read_line(&mut self) -> Result<String, Failure> {
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

    /// Sends a command and returns its result document.
    pub fn call(&mut self, cmd: Command) -> Result<serde_json::Value, Failure> {
        self.next_id += 1;
        let id = self.next_id;
        let mut line = serde_json::to_vec(&Request { id, cmd }).expect("requests serialise");
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .map_err(|e| Failure::Other(format!("writing to p2pd failed: {e}")))?;
        loop {
            let line = self.read_line()?;
            let resp: Response = serde_json::from_str(&line)
                .map_err(|e| Failure::Other(format!("unreadable answer from p2pd: {e}")))?;
            if resp.id != id {
                // Id 0 with an error: the daemon could not read our request
                // at all (too long, not JSON) — it will never answer it.
                if let (0, Some(e)) = (resp.id, resp.error) {
                    return Err(Failure::Ctl(e));
                }
                continue;
            }
            return match (resp.result, resp.error) {
                (_, Some(e)) => Err(Failure::Ctl(e)),
                (Some(v), None) => Ok(v),
                (None, None) => Ok(serde_json::Value::Null),
            };
        }
    }
}

impl Client {
    /// After `watch` or `inbox --follow`: the next event line, parsed.
    pub fn next_event(&mut self) -> Result<serde_json::Value, Failure> {
        let line = self.read_line()?;
        serde_json::from_str(&line)
            .map_err(|e| Failure::Other(format!("unreadable event from p2pd: {e}")))
    }
}

/// Builds a [`CtlError`]-carrying failure for a result that did not parse.
pub fn unexpected(e: impl std::fmt::Display) -> Failure {
    Failure::Ctl(CtlError::new(
        p2p_proto::ctl::ErrorCode::Internal,
        format!("unexpected result from p2pd: {e}"),
    ))
}

/// The socket path from the flag/env or the default.
pub fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.unwrap_or_else(p2p_proto::paths::default_socket_path)
}
