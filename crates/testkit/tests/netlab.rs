//! The NAT lab itself (p2p_testkit::netlab): masquerade, the home-router
//! filter, cone vs symmetric mappings, a TCP simultaneous open through two
//! cone NATs, captures, teardown, and the real binaries run inside it.
//! Each test needs root and returns early (loudly) without it.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use p2p_testkit::netlab::tcp::{self, AddrEcho};
use p2p_testkit::netlab::{self, in_ns, spawn_in, Host, Lab, Nat, WAN_IP};
use p2p_testkit::{wait_for, TestDaemon, TestServer, DEADLINE, POLL};

/// How long a connect that must *not* get through is given: packets from
/// the wan are dropped silently, so the attempt can only time out.
const BLOCKED: Duration = Duration::from_secs(1);
/// How long the two sides of a simultaneous open keep retrying.
const PUNCH_FOR: Duration = Duration::from_secs(5);

fn any(port: u16) -> SocketAddr {
    (Ipv4Addr::UNSPECIFIED, port).into()
}

/// A free port in `host`'s namespace (bound with SO_REUSEPORT and given
/// back; later reuse sockets on it are fine).
fn free_port(host: &Host) -> u16 {
    in_ns(&host.ns, || {
        tcp::reuse_socket(any(0)).unwrap().local_addr().unwrap()
    })
    .as_socket()
    .unwrap()
    .port()
}

/// The public address the wan sees for `host`'s local port `port` talking to `echo`.
fn mapping(host: &Host, port: u16, echo: &AddrEcho) -> SocketAddr {
    let to = echo.addr;
    in_ns(&host.ns, || tcp::observed_from(any(port), to)).expect("mapping probe")
}

/// Writes `line`, reads the peer's line.
fn exchange(s: TcpStream, line: &str) -> std::io::Result<String> {
    s.set_read_timeout(Some(DEADLINE))?;
    (&s).write_all(format!("{line}\n").as_bytes())?;
    let mut got = String::new();
    BufReader::new(&s).read_line(&mut got)?;
    Ok(got.trim().to_string())
}

/// A wan listener that answers every line with the same line (one client).
fn line_echo(ns: &str) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = in_ns(ns, || TcpListener::bind((WAN_IP, 0))).unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            (&s).write_all(line.as_bytes()).unwrap();
            line.clear();
        }
    });
    (addr, t)
}

#[test]
fn lan_hosts_reach_the_wan_as_their_routers_public_address() {
    if !netlab::require_root("lan_hosts_reach_the_wan_as_their_routers_public_address") {
        return;
    }
    let started = Instant::now();
    let mut lab = Lab::new();
    let cone = lab.router(Nat::Cone);
    let sym = lab.router(Nat::Symmetric);
    let (a, a2, b) = (lab.host(&cone), lab.host(&cone), lab.host(&sym));
    let flat = lab.flat_host();
    eprintln!(
        "lab: wan, 2 routers, 3 LAN hosts, 1 flat host made in {:?}",
        started.elapsed()
    );
    let echo = AddrEcho::start(&lab.wan().ns, WAN_IP);
    for (host, public) in [
        (&a, cone.public_ip),
        (&a2, cone.public_ip),
        (&b, sym.public_ip),
        (&flat, flat.ip),
    ] {
        assert_eq!(mapping(host, 0, &echo).ip(), public, "{}", host.ns);
    }
    // Two hosts on one LAN reach each other by their LAN addresses.
    let l = in_ns(&a.ns, || TcpListener::bind((a.ip, 0))).unwrap();
    let to = l.local_addr().unwrap();
    in_ns(&a2.ns, || TcpStream::connect(to)).expect("same-LAN connect");
    assert_eq!(l.accept().unwrap().1.ip(), std::net::IpAddr::V4(a2.ip));
    // No hairpin NAT: a's public mapping is refused from its own LAN (the
    // router answers for its public address itself).
    let port = free_port(&a);
    let _listening = in_ns(&a.ns, || tcp::reuse_listener(any(port))).unwrap();
    let public = mapping(&a, port, &echo);
    let hairpin = in_ns(&a2.ns, || TcpStream::connect_timeout(&public, DEADLINE));
    assert_eq!(
        hairpin.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
}

#[test]
fn nothing_gets_in_from_the_wan_unasked() {
    if !netlab::require_root("nothing_gets_in_from_the_wan_unasked") {
        return;
    }
    let mut lab = Lab::new();
    let r = lab.router(Nat::Cone);
    let h = lab.host(&r);
    let outside = lab.flat_host();
    let echo = AddrEcho::start(&lab.wan().ns, WAN_IP);
    let port = free_port(&h);
    let listener = in_ns(&h.ns, || tcp::reuse_listener(any(port))).unwrap();
    // The host's port is mapped (it talked to the echo from it)...
    let public = mapping(&h, port, &echo);
    assert_eq!(public, SocketAddr::from((r.public_ip, port)));
    // ...but another wan host cannot use that mapping to get in,
    let got_in = in_ns(&outside.ns, || TcpStream::connect_timeout(&public, BLOCKED));
    assert!(got_in.is_err(), "unsolicited connect to the mapping got in");
    // nor route straight to the LAN address through the router.
    let via = r.public_ip.to_string();
    let lan = format!("10.{}.0.0/24", r.index);
    let out = Command::new("ip")
        .args(["-n", &outside.ns, "route", "add", &lan, "via", &via])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let direct = SocketAddr::from((h.ip, port));
    let got_in = in_ns(&outside.ns, || TcpStream::connect_timeout(&direct, BLOCKED));
    assert!(got_in.is_err(), "connect routed to the LAN address got in");
    listener.set_nonblocking(true).unwrap();
    let accepted = listener.accept();
    assert!(accepted.is_err(), "the LAN host accepted {accepted:?}");
}

#[test]
fn cone_mapping_is_endpoint_independent_symmetric_is_not() {
    if !netlab::require_root("cone_mapping_is_endpoint_independent_symmetric_is_not") {
        return;
    }
    let mut lab = Lab::new();
    let cone = lab.router(Nat::Cone);
    let sym = lab.router(Nat::Symmetric);
    let (a, b) = (lab.host(&cone), lab.host(&sym));
    let far = lab.flat_host();
    let echo1 = AddrEcho::start(&lab.wan().ns, WAN_IP);
    let echo2 = AddrEcho::start(&far.ns, far.ip);

    let port = free_port(&a);
    let (m1, m2) = (mapping(&a, port, &echo1), mapping(&a, port, &echo2));
    assert_eq!(m1, m2, "cone: one mapping for both destinations");
    assert_eq!(m1, SocketAddr::from((cone.public_ip, port)), "port kept");

    // fully-random: two equal random ports in a row is a 1-in-64k event;
    // a few tries make a false failure astronomically unlikely.
    let differs = (0..5).any(|_| {
        let port = free_port(&b);
        mapping(&b, port, &echo1) != mapping(&b, port, &echo2)
    });
    assert!(differs, "symmetric: a new mapping per destination");
}

#[test]
fn set_nat_switches_flavour_and_keeps_live_connections() {
    if !netlab::require_root("set_nat_switches_flavour_and_keeps_live_connections") {
        return;
    }
    let mut lab = Lab::new();
    let r = lab.router(Nat::Symmetric);
    let h = lab.host(&r);
    let far = lab.flat_host();
    let echo1 = AddrEcho::start(&lab.wan().ns, WAN_IP);
    let echo2 = AddrEcho::start(&far.ns, far.ip);
    let (to, _server) = line_echo(&lab.wan().ns);
    let live = in_ns(&h.ns, || TcpStream::connect(to)).unwrap();
    assert_eq!(
        exchange(live.try_clone().unwrap(), "before").unwrap(),
        "before"
    );
    // An attempt that never gets an answer (nobody has .250).
    let dead = SocketAddr::from(([203, 0, 113, 250], 9));
    let _ = in_ns(&h.ns, || {
        TcpStream::connect_timeout(&dead, Duration::from_millis(200))
    });

    lab.set_nat(&r, Nat::Cone);
    let port = free_port(&h);
    assert_eq!(mapping(&h, port, &echo1), mapping(&h, port, &echo2));
    assert_eq!(
        exchange(live.try_clone().unwrap(), "after").unwrap(),
        "after",
        "a live connection survives the switch"
    );
    let tracked = Command::new("ip")
        .args(["netns", "exec", &r.ns, "conntrack", "-L"])
        .output()
        .unwrap();
    let tracked = String::from_utf8_lossy(&tracked.stdout);
    assert!(
        !tracked
            .lines()
            .any(|l| l.starts_with("tcp") && l.contains("[UNREPLIED]")),
        "unanswered attempts are forgotten: {tracked}"
    );

    lab.set_nat(&r, Nat::Symmetric);
    let differs = (0..5).any(|_| {
        let port = free_port(&h);
        mapping(&h, port, &echo1) != mapping(&h, port, &echo2)
    });
    assert!(differs, "symmetric again");
}

/// Hosts behind two routers of flavour `nat` each learn their public
/// mapping from a wan echo, then connect() to each other's mapping at the
/// same time, retrying for `PUNCH_FOR`. Returns what each side received.
fn simultaneous_open(nat: Nat) -> [std::io::Result<String>; 2] {
    let mut lab = Lab::new();
    let (r1, r2) = (lab.router(nat), lab.router(nat));
    let (a, b) = (lab.host(&r1), lab.host(&r2));
    let echo = AddrEcho::start(&lab.wan().ns, WAN_IP);
    let (pa, pb) = (free_port(&a), free_port(&b));
    let (ma, mb) = (mapping(&a, pa, &echo), mapping(&b, pb, &echo));
    let start = std::sync::Arc::new(std::sync::Barrier::new(2));
    let side = |host: &Host, port: u16, peer: SocketAddr, name: &'static str| {
        let start = start.clone();
        spawn_in(&host.ns, move || {
            start.wait();
            let start_at = Instant::now();
            let end = start_at + PUNCH_FOR;
            loop {
                match tcp::connect_from(any(port), peer, Duration::from_secs(1)) {
                    Ok(s) => {
                        eprintln!("{name} connected {:?} after the start", start_at.elapsed());
                        return exchange(s, &format!("hello from {name}"));
                    }
                    Err(e) if Instant::now() >= end => return Err(e),
                    // Retry pacing (a refused attempt returns at once).
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        })
    };
    let ta = side(&a, pa, mb, "a");
    let tb = side(&b, pb, ma, "b");
    [ta.join().unwrap(), tb.join().unwrap()]
}

#[test]
fn simultaneous_open_gets_through_two_cone_nats() {
    if !netlab::require_root("simultaneous_open_gets_through_two_cone_nats") {
        return;
    }
    let [a, b] = simultaneous_open(Nat::Cone);
    assert_eq!(a.expect("a connected"), "hello from b");
    assert_eq!(b.expect("b connected"), "hello from a");
}

/// Through two symmetric NATs each SYN leaves on a fresh random port, not
/// the mapping the peer was told, so the other router drops it: no
/// connection (the case the relay is for).
#[test]
fn simultaneous_open_fails_through_two_symmetric_nats() {
    if !netlab::require_root("simultaneous_open_fails_through_two_symmetric_nats") {
        return;
    }
    let [a, b] = simultaneous_open(Nat::Symmetric);
    assert!(a.is_err() && b.is_err(), "connected: {a:?} {b:?}");
}

#[test]
fn capture_holds_every_packet_sent_before_stop() {
    if !netlab::require_root("capture_holds_every_packet_sent_before_stop") {
        return;
    }
    let mut lab = Lab::new();
    let (f, g) = (lab.flat_host(), lab.flat_host());
    let (to, _server) = line_echo(&lab.wan().ns);
    let all = lab.capture(&lab.wan().ns, "br0");
    let server_only = lab.capture_filtered(&lab.wan().ns, "br0", &format!("host {WAN_IP}"));
    let s = in_ns(&f.ns, || TcpStream::connect(to)).unwrap();
    assert_eq!(exchange(s, "marker-7f3a").unwrap(), "marker-7f3a");
    // Traffic between two flat hosts crosses the wan but not the server.
    let l = in_ns(&g.ns, || TcpListener::bind((g.ip, 0))).unwrap();
    let to_g = l.local_addr().unwrap();
    let mut s = in_ns(&f.ns, || TcpStream::connect(to_g)).unwrap();
    s.write_all(b"marker-elsewhere\n").unwrap();
    let mut got = String::new();
    BufReader::new(l.accept().unwrap().0)
        .read_line(&mut got)
        .unwrap();
    assert_eq!(got, "marker-elsewhere\n");

    let (all, server_only) = (all.stop(), server_only.stop());
    assert!(netlab::contains(&all, b"marker-7f3a"));
    assert!(netlab::contains(&all, b"marker-elsewhere"));
    assert!(!netlab::contains(&all, b"marker-never-sent"));
    assert!(netlab::contains(&server_only, b"marker-7f3a"));
    assert!(!netlab::contains(&server_only, b"marker-elsewhere"));
}

#[test]
fn the_lab_is_gone_after_a_panic_and_stale_labs_are_swept() {
    if !netlab::require_root("the_lab_is_gone_after_a_panic_and_stale_labs_are_swept") {
        return;
    }
    let mut names = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut lab = Lab::new();
        let r = lab.router(Nat::Cone);
        let h = lab.host(&r);
        let f = lab.flat_host();
        names.extend([lab.wan().ns.clone(), r.ns, h.ns, f.ns]);
        panic!("a test fails with its lab up");
    }));
    assert!(outcome.is_err());
    assert_eq!(names.len(), 4);
    for ns in &names {
        assert!(!Path::new("/run/netns").join(ns).exists(), "{ns} left");
    }

    // A lab namespace of a process that no longer exists.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let stale = format!("p2pl-{dead_pid}-0-w");
    assert!(Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap()
        .success());
    let _lab = Lab::new();
    assert!(!Path::new("/run/netns").join(&stale).exists(), "not swept");
}

#[test]
fn real_server_and_daemons_run_in_the_lab() {
    if !netlab::require_root("real_server_and_daemons_run_in_the_lab") {
        return;
    }
    let mut lab = Lab::new();
    let (f1, f2) = (lab.flat_host(), lab.flat_host());
    let (cone, sym) = (lab.router(Nat::Cone), lab.router(Nat::Symmetric));
    let (c, d) = (lab.host(&cone), lab.host(&sym));
    let server = TestServer::start_in(&lab.wan().ns, &format!("{WAN_IP}:0"), &[]);
    assert_eq!(server.addr.ip(), WAN_IP);
    let alice = TestDaemon::online_in(&f1.ns, &server, "alice");
    let mut bob = TestDaemon::online_in(&f2.ns, &server, "bob");
    // Daemons behind either NAT reach the server too.
    let _carol = TestDaemon::online_in(&c.ns, &server, "carol");
    let _dave = TestDaemon::online_in(&d.ns, &server, "dave");
    // `ip netns exec` ran p2pd in place: the handle's pid is p2pd's.
    let exe = std::fs::read_link(format!("/proc/{}/exe", bob.pid().unwrap())).unwrap();
    assert!(exe.ends_with("p2pd"), "{exe:?}");

    let (code, doc) = alice.ctl_json(&["connect", "bob", "--no-wait"]);
    assert_eq!(code, 0, "{doc}");
    wait_for(DEADLINE, "bob's pending request", || {
        let (_, r) = bob.ctl_json(&["requests"]);
        (r["requests"].as_array()?.first()?["from"] == "alice").then_some(())
    });
    let (code, doc) = bob.ctl_json(&["accept", "alice"]);
    assert_eq!(code, 0, "{doc}");
    wait_for(DEADLINE, "alice's session", || {
        let (_, s) = alice.ctl_json(&["sessions"]);
        (s["sessions"].as_array()?.first()?["peer"] == "bob").then_some(())
    });
    assert_eq!(alice.ctl_json(&["send", "bob", "hello", "bob"]).0, 0);
    assert_eq!(bob.inbox_texts(&[]), ["hello bob"]);

    // Restarts inside the namespaces: the server on the same address,
    // the daemon back online by itself.
    let mut server = server;
    server.restart();
    bob.restart();
    bob.wait_state("online", DEADLINE);
    alice.wait_state("online", DEADLINE);
}
