//! The client side of the admin socket: `p2p-server status`, `sessions`
//! and `kick USER` (see the parent module for the protocol).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Result, ServerError};

/// How long the client waits for the server's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` to the server at `socket` and returns its answer, or
/// the error it sent.
fn ask(socket: &Path, request: Value) -> Result<Value> {
    let unreachable = |e: std::io::Error| {
        ServerError::Config(format!(
            "cannot reach the running server at {}: {e} (is p2p-server running on this data dir? \
             pass --data-dir DIR or --admin-socket PATH)",
            socket.display()
        ))
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    // A refusal may come (and the server close) before the request is
    // written: read the answer even when the write failed.
    let written = stream.write_all(format!("{request}\n").as_bytes());
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.is_empty() {
        written?;
    }
    let answer: Value = serde_json::from_str(&line)
        .map_err(|e| ServerError::Config(format!("bad answer on the admin socket: {e}")))?;
    if let Some(message) = answer["error"]["message"].as_str() {
        return Err(ServerError::Config(message.to_string()));
    }
    Ok(answer)
}

/// `p2p-server status [--json]`.
pub(crate) fn status(socket: &Path, as_json: bool) -> Result<()> {
    let s = ask(socket, json!({"cmd": "status"}))?;
    if as_json {
        println!("{s}");
        return Ok(());
    }
    let uptime = Duration::from_secs(s["uptime_secs"].as_u64().unwrap_or(0));
    println!(
        "p2p-server {} up {}",
        s["version"].as_str().unwrap_or("?"),
        humantime::format_duration(uptime)
    );
    println!("listening on {}", s["listen"].as_str().unwrap_or("?"));
    match s["metrics"].as_str() {
        Some(m) => println!("metrics on http://{m}/metrics"),
        None => println!("metrics off"),
    }
    println!("sessions online: {}", s["sessions"]);
    println!("accounts: {}", s["users"]);
    println!("relay: {}", if s["relay"] == true { "on" } else { "off" });
    println!("fingerprint: {}", s["fingerprint"].as_str().unwrap_or("?"));
    Ok(())
}

/// `p2p-server sessions [--json]`.
pub(crate) fn sessions(socket: &Path, as_json: bool) -> Result<()> {
    let s = ask(socket, json!({"cmd": "sessions"}))?;
    if as_json {
        println!("{s}");
        return Ok(());
    }
    let list = s["sessions"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no sessions online");
        return Ok(());
    }
    let field = |v: &Value, k: &str| v[k].as_str().unwrap_or("?").to_string();
    let w = list
        .iter()
        .map(|v| field(v, "user").len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:w$}  {:23}  FROM", "USER", "SINCE");
    for v in &list {
        println!(
            "{:w$}  {:23}  {}",
            field(v, "user"),
            p2p_sys::localtime::human(&field(v, "since")),
            field(v, "address")
        );
    }
    Ok(())
}

/// `p2p-server kick USER`.
pub(crate) fn kick(socket: &Path, user: &str) -> Result<()> {
    ask(socket, json!({"cmd": "kick", "user": user}))?;
    println!("{user} disconnected; the daemon is logged out until its user logs in again");
    Ok(())
}
