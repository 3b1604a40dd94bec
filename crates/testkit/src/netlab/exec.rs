//! Running tools and closures inside lab namespaces.

use std::io::Write;
use std::process::{Command, Stdio};

use nix::sched::{setns, CloneFlags};

/// Runs `prog ARGS` (inside namespace `ns` when given, via `ip netns
/// exec`) with `stdin`; returns its stdout, or a message with its stderr.
fn try_run_stdin(
    prog: &str,
    args: &[&str],
    ns: Option<&str>,
    stdin: &str,
) -> Result<String, String> {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, prog]);
            c
        }
        None => Command::new(prog),
    };
    let shown = format!("{prog} {}", args.join(" "));
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run {prog} ({e}): the NAT lab needs iproute2, nftables, conntrack \
                 and tcpdump installed (see .ci/run)"
            )
        })?;
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{shown}`{} failed ({}): {}",
            ns.map(|n| format!(" in {n}")).unwrap_or_default(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// [`run`] that returns the failure instead of panicking.
pub(crate) fn try_run(prog: &str, args: &[&str], ns: Option<&str>) -> Result<String, String> {
    try_run_stdin(prog, args, ns, "")
}

/// Runs `prog ARGS` (in `ns` when given); panics with its stderr on failure.
pub(crate) fn run(prog: &str, args: &[&str], ns: Option<&str>) -> String {
    try_run(prog, args, ns).unwrap_or_else(|e| panic!("{e}"))
}

/// `ip ARGS` in the host's namespace (every lab command names its
/// namespace with `-n` or `netns`).
pub(crate) fn ip(args: &[&str]) {
    run("ip", args, None);
}

/// Loads an nftables script in `ns` (one atomic transaction).
pub(crate) fn nft(ns: &str, script: &str) {
    try_run_stdin("nft", &["-f", "-"], Some(ns), script).unwrap_or_else(|e| panic!("{e}"));
}

/// Moves the calling thread into network namespace `ns`.
fn enter(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    setns(&fd, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {ns}: {e}"));
}

/// Runs `f` on a new thread that has entered network namespace `ns`, and
/// returns its result (a panic in `f` is re-raised here). Sockets made in
/// `f` stay in `ns` wherever they are used later, so `f` may return them.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(ns);
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Like [`in_ns`] but returns at once: `f` runs on its own thread inside
/// `ns` (a listener, one side of a simultaneous open); join the handle for
/// its result.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
}
