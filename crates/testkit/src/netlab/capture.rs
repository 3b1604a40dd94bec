//! [`Capture`]: tcpdump on one lab interface, started and stopped without
//! losing the packets in between.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;

use super::in_ns;
use crate::{short_tempdir, wait_for, DEADLINE};

/// Captures stopped so far in this process (makes each end marker unique).
static ENDS: AtomicU32 = AtomicU32::new(0);
/// Discard port the end marker is broadcast to (nobody listens there).
const END_PORT: u16 = 9;

/// A running `tcpdump -i IFACE -w FILE -U` inside a namespace.
///
/// [`Capture::start`] returns only once tcpdump has said "listening on"
/// (the kernel is filling its buffer from then on). [`Capture::stop`]
/// first broadcasts a unique end marker (UDP, bound to the interface) and
/// waits until the marker is in the file, so every packet sent before
/// `stop` is in what it returns. The interface must have an IPv4 address
/// (`br0` in the wan, `wan0`/`lan0` in a router, `eth0` in a host).
pub struct Capture {
    dir: tempfile::TempDir,
    child: Option<Child>,
    ns: String,
    iface: String,
}

impl Capture {
    /// Starts tcpdump on `iface` in namespace `ns`, keeping only packets
    /// that match the pcap `filter` when given (see
    /// [`crate::netlab::Lab::capture`]).
    pub fn start(ns: &str, iface: &str, filter: Option<&str>) -> Capture {
        let dir = short_tempdir();
        let file = dir.path().join("capture.pcap");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "tcpdump", "-i", iface, "-n", "-U"])
            // Each packet to the file at once (not per 1 s kernel block), full
            // packets (no truncation), and stay root so the file is ours.
            .args(["--immediate-mode", "-s", "0", "-Z", "root", "-w"])
            .arg(&file);
        if let Some(f) = filter {
            // The end marker must pass whatever the filter.
            cmd.arg(format!("({f}) or (udp dst port {END_PORT})"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run tcpdump ({e}): install tcpdump"));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut said = Vec::new();
        loop {
            match rx.recv_timeout(DEADLINE) {
                Ok(line) if line.contains("listening on") => break,
                Ok(line) => said.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "tcpdump on {iface} in {ns} did not start: {}",
                        said.join("\n")
                    );
                }
            }
        }
        Capture {
            dir,
            child: Some(child),
            ns: ns.to_string(),
            iface: iface.to_string(),
        }
    }

    /// Where the pcap is being written.
    pub fn file(&self) -> PathBuf {
        self.dir.path().join("capture.pcap")
    }

    /// Stops capturing and returns the pcap file's bytes (payloads appear
    /// verbatim in them; a text split over two TCP segments would not, so
    /// search for markers shorter than a segment).
    pub fn stop(mut self) -> Vec<u8> {
        let marker = format!(
            "netlab-capture-end-{}-{}",
            std::process::id(),
            ENDS.fetch_add(1, Ordering::Relaxed)
        );
        let file = self.file();
        let socket = in_ns(&self.ns, || {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
                .expect("udp socket");
            s.set_broadcast(true).expect("SO_BROADCAST");
            s.bind_device(Some(self.iface.as_bytes()))
                .expect("SO_BINDTODEVICE");
            s
        });
        let to: std::net::SocketAddr = ([255, 255, 255, 255], END_PORT).into();
        wait_for(DEADLINE, "the capture's end marker in the pcap", || {
            // Sent on each poll: a datagram is cheap, and one lost to a
            // full buffer must not hang the test.
            let _ = socket.send_to(marker.as_bytes(), &to.into());
            let bytes = std::fs::read(&file).ok()?;
            contains(&bytes, marker.as_bytes()).then_some(())
        });
        self.end();
        std::fs::read(&file).expect("read capture")
    }

    fn end(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let _ = c.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.end();
    }
}

/// Whether `needle` occurs in `haystack` (e.g. a marker in a capture).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
