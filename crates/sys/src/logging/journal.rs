//! A journald layer whose MESSAGE says what happened *and why*.
//!
//! tracing-journald sends an event's `message` as MESSAGE and every other
//! field as an extra, so `warn!(reason = %e, "login refused")` reads
//! "login refused" in `journalctl`, the why hidden in a field. Here the
//! cause (a `reason`, `cause`, `why` or `error` field) is appended to
//! MESSAGE unless the message already says it; every field (and those of
//! the spans it is in) is still an extra, `F_` + upper-cased name, for
//! `journalctl -o verbose` and filters.
//!
//! The transport is the journal's native protocol
//! (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>): one datagram per event
//! on the journal socket, `KEY=value` lines, or `KEY\n` + 64-bit
//! little-endian length + value + `\n` for a value with a newline.

use std::fmt::{self, Write as _};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The journal's native socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// Overrides [`JOURNAL_SOCKET`] (tests bind their own datagram socket).
pub const JOURNAL_SOCKET_ENV: &str = "P2P_JOURNAL_SOCKET";
/// Longest field value sent, in bytes: keeps every event in one datagram
/// (the socket's limit is far above; a larger one would need a memfd).
pub const MAX_FIELD_BYTES: usize = 16 * 1024;
/// Fields whose value is the cause of what the message says.
const CAUSE_FIELDS: [&str; 4] = ["reason", "cause", "why", "error"];

/// The layer: a socket and where to send.
pub struct JournalLayer {
    socket: UnixDatagram,
    path: PathBuf,
    identifier: String,
}

impl JournalLayer {
    /// Connects to the journal (`P2P_JOURNAL_SOCKET`, else the system's),
    /// checking with an empty datagram (which journald ignores) that
    /// something listens.
    pub fn new() -> io::Result<JournalLayer> {
        let path = std::env::var_os(JOURNAL_SOCKET_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(JOURNAL_SOCKET));
        let socket = UnixDatagram::unbound()?;
        socket.send_to(&[], &path)?;
        let identifier = std::env::args_os()
            .next()
            .as_deref()
            .and_then(|p| std::path::Path::new(p).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(JournalLayer {
            socket,
            path,
            identifier,
        })
    }
}

/// An event's fields in order, values as text.
#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name(), format!("{value:?}")));
    }
}

/// MESSAGE: the message, then ": CAUSE" unless it already says the cause.
pub fn compose_message(message: &str, fields: &[(&str, String)]) -> String {
    let cause = fields
        .iter()
        .find(|(name, v)| CAUSE_FIELDS.contains(name) && !v.is_empty());
    match cause {
        Some((_, c)) if !message.contains(c.as_str()) => format!("{message}: {c}"),
        _ => message.to_string(),
    }
}

/// `F_` + the upper-cased name (as tracing-journald did, so
/// `journalctl F_USER=alice` keeps working; and no field can pose as one
/// of ours or as a trusted `_` field).
fn field_name(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    format!("F_{upper}")
}

fn put(buf: &mut Vec<u8>, name: &str, value: &str) {
    let mut end = value.len().min(MAX_FIELD_BYTES);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let value = &value[..end];
    buf.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value.as_bytes());
    buf.push(b'\n');
}

fn priority(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "3",
        Level::WARN => "4",
        Level::INFO => "6",
        Level::DEBUG | Level::TRACE => "7",
    }
}

/// The datagram for one event; `spans` are the fields of the spans it is
/// in, outermost first (the server's `conn` span and its `id`).
fn datagram(identifier: &str, event: &Event<'_>, spans: Vec<(&'static str, String)>) -> Vec<u8> {
    let mut fields = Fields::default();
    event.record(&mut fields);
    let meta = event.metadata();
    let message = fields
        .0
        .iter()
        .find(|(n, _)| *n == "message")
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    let extras: Vec<(&str, String)> = fields
        .0
        .into_iter()
        .filter(|(n, _)| *n != "message")
        .collect();
    let mut buf = Vec::with_capacity(256);
    put(&mut buf, "MESSAGE", &compose_message(&message, &extras));
    put(&mut buf, "PRIORITY", priority(meta.level()));
    put(&mut buf, "SYSLOG_IDENTIFIER", identifier);
    put(&mut buf, "TARGET", meta.target());
    if let Some(file) = meta.file() {
        put(&mut buf, "CODE_FILE", file);
    }
    if let Some(line) = meta.line() {
        let mut l = String::new();
        let _ = write!(l, "{line}");
        put(&mut buf, "CODE_LINE", &l);
    }
    for (name, value) in spans.iter().chain(&extras) {
        put(&mut buf, &field_name(name), value);
    }
    buf
}

impl<S> tracing_subscriber::Layer<S> for JournalLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<Fields>() {
                    spans.extend(fields.0.iter().cloned());
                }
            }
        }
        // Nowhere to report a failure to log.
        let _ = self
            .socket
            .send_to(&datagram(&self.identifier, event, spans), &self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_joins_the_message_once() {
        let f = |name: &'static str, v: &str| vec![(name, v.to_string())];
        assert_eq!(
            compose_message("login refused", &f("reason", "wrong password")),
            "login refused: wrong password"
        );
        assert_eq!(
            compose_message(
                "login refused: wrong password",
                &f("reason", "wrong password")
            ),
            "login refused: wrong password"
        );
        assert_eq!(compose_message("ready", &f("peer", "1.2.3.4:5")), "ready");
        assert_eq!(
            compose_message("cannot save", &f("cause", "disk full")),
            "cannot save: disk full"
        );
    }

    #[test]
    fn fields_are_encoded_as_the_journal_reads_them() {
        let mut buf = Vec::new();
        put(&mut buf, "A", "one line");
        put(&mut buf, "B", "two\nlines");
        let mut want = b"A=one line\nB\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(buf, want);
        assert_eq!(field_name("peer"), "F_PEER");
        assert_eq!(field_name("target"), "F_TARGET");
        assert_eq!(field_name("a.b"), "F_A_B");
    }
}
