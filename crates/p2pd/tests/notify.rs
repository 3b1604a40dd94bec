//! Desktop notifications end to end (SPEC §11 "being told"): a private
//! session bus (`dbus-daemon`, owned by the test, killed at the end), a fake
//! `org.freedesktop.Notifications` served on it by the test with zbus, and
//! the real server and daemons. Needs `dbus-daemon` (Debian: `dbus`;
//! `.ci/run` installs it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use p2p_testkit::{
    short_tempdir, wait_for, Lines, TestDaemon, TestServer, DEADLINE, FAST_RECONNECT,
};

/// A private session bus that allows everything and activates nothing.
struct Bus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Bus {
    fn start() -> Bus {
        let dir = short_tempdir();
        let address = format!("unix:path={}", dir.path().join("bus").display());
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#
            ),
        )
        .unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Its warnings (it cannot raise its fd limit here) stay out of
            // the test output.
            .stderr(std::fs::File::create(dir.path().join("bus.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dbus-daemon ({e}): install dbus (apt-get install dbus)")
            });
        // It prints its address once it listens.
        let printed = Lines::new(child.stdout.take().unwrap()).next_line("dbus-daemon's address");
        assert!(printed.starts_with(&address), "{printed}");
        Bus {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `Notify` call as the fake service received it.
#[derive(Debug)]
struct Shown {
    app_name: String,
    summary: String,
    body: String,
    actions: Vec<String>,
}

/// The fake notification service: records each call, answers with an id.
struct Fake {
    calls: mpsc::Sender<Shown>,
    next_id: AtomicU32,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Fake {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        _hints: HashMap<String, zbus::zvariant::OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let _ = self.calls.send(Shown {
            app_name,
            summary,
            body,
            actions,
        });
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The fake service, online on `bus` until dropped.
struct Service {
    calls: mpsc::Receiver<Shown>,
    _conn: zbus::Connection,
    _runtime: tokio::runtime::Runtime,
}

impl Service {
    fn serve(bus: &Bus) -> Service {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (tx, calls) = mpsc::channel();
        let fake = Fake {
            calls: tx,
            next_id: AtomicU32::new(0),
        };
        let conn = runtime
            .block_on(async {
                zbus::connection::Builder::address(bus.address.as_str())?
                    .name("org.freedesktop.Notifications")?
                    .serve_at("/org/freedesktop/Notifications", fake)?
                    .build()
                    .await
            })
            .expect("serve the fake notification service");
        Service {
            calls,
            _conn: conn,
            _runtime: runtime,
        }
    }

    fn next(&self, what: &str) -> Shown {
        self.calls
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no Notify call within {DEADLINE:?}: {what}"))
    }
}

/// `user` online on `server`, its daemon on `bus`, `extra` in its config.
fn online_on_bus(server: &TestServer, bus: &Bus, user: &str, extra: &str) -> TestDaemon {
    let password = format!("{user}-password");
    server.add_user(user, &password);
    let config = format!("{FAST_RECONNECT}{extra}");
    let d = TestDaemon::start_with_env(
        &config,
        &[("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str())],
    );
    assert_eq!(d.login(server, user, &password).0, 0);
    d
}

fn invite(from: &TestDaemon, to: &str) {
    let (code, doc) = from.ctl_json(&["connect", to, "--no-wait"]);
    assert_eq!(code, 0, "{doc}");
}

fn config_file(d: &TestDaemon) -> PathBuf {
    let state = d.state_dir();
    state
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("c/p2p/p2pd.toml")
}

fn hangup(d: &TestDaemon) {
    kill(
        Pid::from_raw(d.pid().expect("running") as i32),
        Signal::SIGHUP,
    )
    .unwrap();
}

/// alice invites bob: bob's desktop is told who and how to accept. A bus
/// with nobody serving notifications costs nothing (the request is still
/// there, the daemon answers); the next invitation tries the bus again.
#[test]
fn an_invitation_reaches_the_notification_service() {
    let bus = Bus::start();
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let bob = online_on_bus(&server, &bus, "bob", "");

    // Nobody owns org.freedesktop.Notifications yet.
    invite(&alice, "bob");
    wait_for(DEADLINE, "bob's failed notification logged", || {
        bob.log()
            .contains("desktop notifications are not working")
            .then_some(())
    });
    assert_eq!(bob.status()["pending"], 1);

    let service = Service::serve(&bus);
    invite(&alice, "bob");
    let shown = service.next("alice's invitation");
    assert_eq!(shown.app_name, "p2pd");
    assert_eq!(shown.summary, "alice wants to talk");
    assert_eq!(shown.body, "p2pctl accept alice");
    assert!(shown.actions.is_empty(), "{shown:?}");
}

/// `notify = false`: no call. Synchronised on bob's own decision (logged),
/// then notifications are switched on by SIGHUP and carol's invitation
/// must be the first and only call: bob's notifications go out in order,
/// so a call for alice would have come first.
#[test]
fn notify_false_shows_nothing_until_a_reload_turns_it_on() {
    let bus = Bus::start();
    let service = Service::serve(&bus);
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let carol = TestDaemon::online(&server, "carol");
    let bob = online_on_bus(&server, &bus, "bob", "notify = false\n");

    invite(&alice, "bob");
    wait_for(DEADLINE, "bob deciding on alice's invitation", || {
        let log = bob.log();
        log.lines()
            .any(|l| l.contains("no desktop notification") && l.contains("why=Off"))
            .then_some(())
    });

    std::fs::write(
        config_file(&bob),
        format!("{FAST_RECONNECT}notify = true\n"),
    )
    .unwrap();
    hangup(&bob);
    wait_for(DEADLINE, "notify switched on by SIGHUP", || {
        bob.log().contains("SIGHUP: notify changed").then_some(())
    });
    invite(&carol, "bob");
    let shown = service.next("carol's invitation");
    assert_eq!(shown.summary, "carol wants to talk", "{shown:?}");
    assert!(
        service.calls.try_recv().is_err(),
        "only carol's invitation was shown"
    );
    assert_eq!(bob.status()["pending"], 2);
}
