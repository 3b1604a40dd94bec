//! A NAT lab of Linux network namespaces, made and torn down by the test
//! itself (SPEC §10). Needs root (see [`require_root`]) and the tools `ip`,
//! `nft`, `conntrack` and `tcpdump` (Debian: iproute2, nftables, conntrack,
//! tcpdump; `.ci/run` installs them).
//!
//! ```text
//!                        wan namespace (lab.wan().ns)
//!              bridge br0 203.0.113.1/24  — the "internet"; run the server here
//!          ┌──────────────┬────────────────────┬───────────────┐
//!        veth r1        veth r2              veth f1   ...  (each in wan, on br0)
//!          │              │                    │
//!   router 1 ns     router 2 ns           flat host ns: eth0 203.0.113.x
//!   wan0 203.0.113.x  wan0 203.0.113.y    (public address, no NAT)
//!   lan0 10.1.0.1/24  lan0 10.2.0.1/24
//!     │   (bridge; veths h1, h2, ... on it)
//!   host ns: eth0 10.1.0.11/24, 10.1.0.12/24, ... default via 10.1.0.1
//! ```
//!
//! Public addresses are handed out in order of creation from
//! 203.0.113.2 (routers and flat hosts share the range); router `i` gets
//! the LAN 10.`i`.0.0/24 and its `j`-th host 10.`i`.0.`10+j`. Every address
//! and route lives inside the lab's namespaces: nothing is added to the
//! host's interfaces, routes or nftables ruleset (even the veth pairs are
//! created straight inside their namespaces). IPv6 is disabled in every lab
//! namespace so only the IPv4 paths above exist.
//!
//! Every router forwards (`ip_forward=1`) and loads this ruleset, a home
//! router: masquerade out of the wan side, and from the wan side nothing
//! but replies comes in — neither forwarded to the LAN nor delivered to
//! the router itself (dropped silently, as home routers do; a SYN that
//! arrives before the local side's own SYN is dropped, not reset, which is
//! what lets a simultaneous open succeed):
//!
//! ```text
//! table ip lab {
//!   chain nat_out { type nat hook postrouting priority srcnat;
//!     oifname "wan0" masquerade                      # Nat::Cone
//!     oifname "wan0" masquerade random,fully-random  # Nat::Symmetric (instead)
//!   }
//!   chain filter_forward { type filter hook forward priority filter; policy drop;
//!     ct state established,related accept
//!     iifname "lan0" oifname "wan0" accept
//!   }
//!   chain filter_input { type filter hook input priority filter; policy accept;
//!     iifname "wan0" ct state established,related accept
//!     iifname "wan0" drop
//!   }
//! }
//! ```
//!
//! Plain `masquerade` keeps the source port when it is free, so one local
//! socket has one public mapping whatever the destination
//! (endpoint-independent mapping, a "cone"); `random,fully-random` picks a
//! new random port for every new connection (a symmetric NAT).
//!
//! Behaviour worth knowing when writing scenarios:
//! - No hairpin NAT: a LAN host connecting to its own router's public
//!   address is refused by the router, so two hosts on one LAN must use
//!   their LAN addresses.
//! - Unsolicited packets from the wan are dropped, not refused: a connect
//!   that cannot get in only times out. In a simultaneous open the first
//!   SYN to arrive is dropped and the second gets through; if both sides
//!   start together this takes microseconds, otherwise it waits for the
//!   kernel's SYN retransmission (1 s, then 3 s, ...): retry the connect.
//! - [`Lab::set_nat`] keeps tracked connections and their mappings; see
//!   there, and [`Lab::flush_conntrack`] to start over.
//! - UDP is masqueraded and filtered the same way (replies only).
//! - If the host has br_netfilter loaded, the lab turns
//!   `bridge-nf-call-iptables` off in its namespaces (it is per namespace),
//!   or the routers' forward chain would drop traffic between LAN hosts.
//!
//! Names: namespaces are `p2pl-PID-N-ROLE` (`w`, `r1`, `r1h1`, `f1`): unique
//! per process and lab, so tests run in parallel threads, and a lab left by
//! a killed run is swept by the next [`Lab::new`] (its PID is dead). The
//! [`Lab`] deletes its namespaces on drop, also when the test panics
//! (deleting a namespace deletes its veths). Drop the lab *after* the
//! processes running in it (declare it first in the test).
//!
//! Running things inside: [`crate::TestServer::start_in`] and
//! [`crate::TestDaemon::start_in`] run the real binaries under
//! `ip netns exec`; `p2pctl` runs outside (the control socket is a Unix
//! socket on the shared filesystem). [`in_ns`] / [`spawn_in`] run a closure
//! on a thread inside a namespace, for plain std sockets; [`tcp`] has
//! SO_REUSEPORT helpers for mapping and simultaneous-open tests.

mod capture;
mod exec;
mod router;
pub mod tcp;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

pub use capture::{contains, Capture};
pub use exec::{in_ns, spawn_in};
use exec::{ip, nft, run};
pub use router::Nat;
use router::{forget_unreplied, ruleset};

/// Prefix of every lab namespace name (the stale-lab sweep looks for it).
const PREFIX: &str = "p2pl-";
/// The wan namespace's own address (on its bridge): where a server listens.
pub const WAN_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// Highest last octet handed out on the wan /24 (.255 is broadcast).
const WAN_LAST: u8 = 254;
/// Labs made by this process so far (part of each namespace name).
static LABS: AtomicU32 = AtomicU32::new(0);

/// A namespace with one address: the wan itself, a flat host, or a LAN host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Namespace name (for `ip netns exec`, [`in_ns`], `start_in`).
    pub ns: String,
    /// Its address (public for the wan and flat hosts, 10.x for LAN hosts).
    pub ip: Ipv4Addr,
    /// Its interface towards the network (`br0` for the wan, else `eth0`).
    pub iface: String,
}

/// A NAT router namespace (see the module doc for its ruleset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    /// Namespace name.
    pub ns: String,
    /// Its public (wan) address: what the world sees of its LAN hosts.
    pub public_ip: Ipv4Addr,
    /// Its LAN-side address, the LAN hosts' default gateway.
    pub lan_ip: Ipv4Addr,
    /// 1-based router number (its LAN is 10.`index`.0.0/24).
    pub index: u8,
}

/// A lab: the wan namespace plus the routers and hosts added to it; all
/// deleted on drop. See the module doc.
pub struct Lab {
    /// `p2pl-PID-N-`: prefix of this lab's namespace names.
    name: String,
    wan: Host,
    /// Every namespace made, in creation order (deleted in reverse).
    namespaces: Vec<String>,
    routers: Vec<Router>,
    /// Hosts per router (index - 1), for the next host number.
    lan_hosts: Vec<u8>,
    flat_hosts: u8,
    next_wan: u8,
}

/// True when running as root. Otherwise prints a loud notice naming
/// `test` to stderr and returns false: the test should then return early
/// (CI runs as root, so the lab tests run there).
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!(
        "\n!!!!!!!!!! SKIPPED {test}: the NAT lab needs root (network namespaces, nftables). \
         Run as root to test it; CI does. !!!!!!!!!!\n"
    );
    false
}

impl Lab {
    /// Makes the wan namespace (bridge `br0`, [`WAN_IP`]), after deleting
    /// namespaces left by earlier runs whose process is gone. Panics when
    /// a step fails (not root, tools missing).
    pub fn new() -> Lab {
        sweep_stale();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-", std::process::id());
        let mut lab = Lab {
            wan: Host {
                ns: format!("{name}w"),
                ip: WAN_IP,
                iface: "br0".into(),
            },
            name,
            namespaces: Vec::new(),
            routers: Vec::new(),
            lan_hosts: Vec::new(),
            flat_hosts: 0,
            next_wan: 2,
        };
        let w = lab.wan.ns.clone();
        lab.add_ns(&w);
        ip(&["-n", &w, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &w,
            "addr",
            "add",
            &format!("{WAN_IP}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &w, "link", "set", "br0", "up"]);
        lab
    }

    /// The wan namespace ([`WAN_IP`] on `br0`): run the server here; a
    /// capture on `br0` sees every packet between routers and flat hosts.
    pub fn wan(&self) -> &Host {
        &self.wan
    }

    /// Adds a router with a public address on the wan and an empty LAN
    /// (add hosts with [`Lab::host`]).
    pub fn router(&mut self, nat: Nat) -> Router {
        let index = u8::try_from(self.routers.len() + 1).expect("at most 255 routers");
        let ns = format!("{}r{index}", self.name);
        let public_ip = self.wan_address();
        self.add_ns(&ns);
        self.wan_port(&ns, "wan0", &format!("r{index}"), public_ip);
        let lan_ip = Ipv4Addr::new(10, index, 0, 1);
        ip(&["-n", &ns, "link", "add", "lan0", "type", "bridge"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{lan_ip}/24"),
            "dev",
            "lan0",
        ]);
        ip(&["-n", &ns, "link", "set", "lan0", "up"]);
        in_ns(&ns, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("ip_forward=1")
        });
        nft(&ns, &ruleset(nat));
        let r = Router {
            ns,
            public_ip,
            lan_ip,
            index,
        };
        self.routers.push(r.clone());
        self.lan_hosts.push(0);
        r
    }

    /// Adds a host on `router`'s LAN (several hosts may share one LAN).
    pub fn host(&mut self, router: &Router) -> Host {
        let count = &mut self.lan_hosts[usize::from(router.index) - 1];
        *count += 1;
        let j = *count;
        assert!(j <= 200, "at most 200 hosts per LAN");
        let ns = format!("{}r{}h{j}", self.name, router.index);
        let host_ip = Ipv4Addr::new(10, router.index, 0, 10 + j);
        self.add_ns(&ns);
        let port = format!("h{j}");
        ip(&[
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
            &router.ns,
        ]);
        ip(&[
            "-n", &router.ns, "link", "set", &port, "master", "lan0", "up",
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{host_ip}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        let gw = router.lan_ip.to_string();
        ip(&["-n", &ns, "route", "add", "default", "via", &gw]);
        Host {
            ns,
            ip: host_ip,
            iface: "eth0".into(),
        }
    }

    /// Adds a host with a public address straight on the wan (no NAT).
    pub fn flat_host(&mut self) -> Host {
        self.flat_hosts += 1;
        let k = self.flat_hosts;
        let ns = format!("{}f{k}", self.name);
        let host_ip = self.wan_address();
        self.add_ns(&ns);
        self.wan_port(&ns, "eth0", &format!("f{k}"), host_ip);
        Host {
            ns,
            ip: host_ip,
            iface: "eth0".into(),
        }
    }

    /// Replaces `router`'s NAT flavour at once (one nft transaction), for
    /// connections made from now on. Connections already tracked keep the
    /// mapping they got (a live relayed session is not broken); tracked tcp
    /// and udp attempts that never saw a reply (failed punches, a SYN still
    /// being retried) are deleted, or a retry with the same addresses would
    /// reuse their old mapping. See [`Lab::flush_conntrack`] to drop all.
    pub fn set_nat(&self, router: &Router, nat: Nat) {
        nft(&router.ns, &ruleset(nat));
        forget_unreplied(&router.ns);
    }

    /// Deletes every connection-tracking entry of `router` (`conntrack -F`).
    /// Live connections are tracked again from their next packet out, with
    /// a mapping chosen afresh: the same port under [`Nat::Cone`] when it
    /// is still free, a new random one under [`Nat::Symmetric`] (which
    /// breaks that connection).
    pub fn flush_conntrack(&self, router: &Router) {
        run("conntrack", &["-F"], Some(&router.ns));
    }

    /// Starts `tcpdump` on `iface` in namespace `ns` and returns once it is
    /// capturing. See [`Capture`]. The server's traffic:
    /// `lab.capture(&lab.wan().ns, "br0")` (which also sees every packet
    /// between routers and flat hosts).
    pub fn capture(&self, ns: &str, iface: &str) -> Capture {
        Capture::start(ns, iface, None)
    }

    /// [`Lab::capture`] keeping only the packets that match the pcap
    /// `filter` (e.g. `"host 203.0.113.1"`: to or from the server).
    pub fn capture_filtered(&self, ns: &str, iface: &str, filter: &str) -> Capture {
        Capture::start(ns, iface, Some(filter))
    }

    /// The next free public address.
    fn wan_address(&mut self) -> Ipv4Addr {
        assert!(self.next_wan <= WAN_LAST, "wan addresses exhausted");
        let a = Ipv4Addr::new(203, 0, 113, self.next_wan);
        self.next_wan += 1;
        a
    }

    /// A veth `inner` in `ns` with address `addr`, its peer `outer` in the
    /// wan namespace on the bridge.
    fn wan_port(&self, ns: &str, inner: &str, outer: &str, addr: Ipv4Addr) {
        let w = &self.wan.ns;
        ip(&[
            "-n", ns, "link", "add", inner, "type", "veth", "peer", "name", outer, "netns", w,
        ]);
        ip(&["-n", w, "link", "set", outer, "master", "br0", "up"]);
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", inner]);
        ip(&["-n", ns, "link", "set", inner, "up"]);
    }

    /// Creates namespace `ns` (recorded first, so drop deletes it even if a
    /// later step panics), with loopback up and IPv6 off.
    fn add_ns(&mut self, ns: &str) {
        ip(&["netns", "add", ns]);
        self.namespaces.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        in_ns(ns, || {
            for key in ["all", "default"] {
                let path = format!("/proc/sys/net/ipv6/conf/{key}/disable_ipv6");
                std::fs::write(&path, "1").unwrap_or_else(|e| panic!("{path}: {e}"));
            }
            // With br_netfilter loaded (its switch is per namespace, on by
            // default) frames bridged between two LAN hosts would pass the
            // router's forward chain and be dropped: keep bridging layer 2.
            let bridge_nf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
            if std::path::Path::new(bridge_nf).exists() {
                std::fs::write(bridge_nf, "0").unwrap_or_else(|e| panic!("{bridge_nf}: {e}"));
            }
        });
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            // Never panic in drop (it may run during a panic).
            if let Err(e) = exec::try_run("ip", &["netns", "del", ns], None) {
                eprintln!("netlab: could not delete namespace {ns}: {e}");
            }
        }
    }
}

/// Deletes lab namespaces whose creating process is gone (a run killed
/// before its drops ran). Namespaces of live processes are left alone.
fn sweep_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = exec::try_run("ip", &["netns", "del", &name], None);
        }
    }
}
