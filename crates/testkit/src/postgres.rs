//! A real, throwaway PostgreSQL for the shared-backend tests (SPEC §9):
//! `initdb` into a temp dir and `pg_ctl start` listening on 127.0.0.1 at a
//! free port (plus a socket in the same temp dir), stopped and deleted when
//! the handle drops.
//!
//! `initdb` refuses to run as root, and CI runs as root: then every
//! PostgreSQL program runs as an unprivileged system user (`postgres`, which
//! the Debian package creates, else `nobody`) through `setpriv`, and the temp
//! dir belongs to that user. PostgreSQL missing is a test failure with the
//! fix in the message, never a skip: `.ci/run` installs it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Where Debian installs the server programs, one dir per major version.
const PG_LIB: &str = "/usr/lib/postgresql";
/// Superuser created by `initdb`, used by the tests' connection URLs.
const SUPERUSER: &str = "p2p";
/// Times a start is tried on a fresh port (another process may take the
/// free port found between our probe and PostgreSQL's bind).
const START_ATTEMPTS: usize = 3;
/// Seconds `pg_ctl` waits for the server to accept connections.
const START_WAIT_SECS: &str = "60";
/// `max_connections` of every test cluster. A server keeps up to
/// `p2p_server::pg::POOL_SIZE` + 1 (LISTEN) connections; the shared cluster
/// of a `P2P_TEST_BACKEND=postgres` run serves every server of one test
/// binary, several tests at once, each with a server or three (PostgreSQL's
/// default of 100 is about six of them).
const MAX_CONNECTIONS: u32 = 400;

/// The cluster one test process shares (see [`TestPostgres::shared`]).
static SHARED: OnceLock<TestPostgres> = OnceLock::new();

/// Who runs the PostgreSQL programs.
struct RunAs {
    uid: u32,
    gid: u32,
}

/// A running throwaway PostgreSQL cluster.
pub struct TestPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    run_as: Option<RunAs>,
    port: u16,
    password: String,
    next_db: AtomicU32,
}

impl TestPostgres {
    /// Initialises and starts a cluster; panics (saying what to install)
    /// when PostgreSQL is missing.
    pub fn start() -> TestPostgres {
        let bin = find_bin();
        let run_as = run_as();
        let dir = crate::short_tempdir();
        if let Some(r) = &run_as {
            std::os::unix::fs::chown(dir.path(), Some(r.uid), Some(r.gid))
                .expect("chown the PostgreSQL temp dir");
        }
        let password = format!("{:032x}", rand_u128());
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).expect("write pwfile");
        if let Some(r) = &run_as {
            std::os::unix::fs::chown(&pwfile, Some(r.uid), Some(r.gid)).expect("chown pwfile");
        }
        let mut pg = TestPostgres {
            bin,
            dir,
            run_as,
            port: 0,
            password,
            next_db: AtomicU32::new(0),
        };
        let data = pg.data_dir();
        let out = pg.run_pg(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "--pwfile".as_ref(),
                pwfile.as_os_str(),
                "--auth-local=trust".as_ref(),
                "--auth-host=scram-sha-256".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed:\n{}",
            output_text(&out)
        );
        let _ = std::fs::remove_file(&pwfile);
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            pg.port = free_port();
            let out = pg.pg_ctl_start();
            if out.status.success() {
                return pg;
            }
            last = format!("{}\n{}", output_text(&out), pg.log());
        }
        panic!("PostgreSQL did not start:\n{last}");
    }

    /// The cluster every [`crate::TestServer`] of this test process serves
    /// from under `P2P_TEST_BACKEND=postgres`: started on first use, each
    /// server in its own [`TestPostgres::fresh_database`]. A static is never
    /// dropped, so an `atexit` hook stops it (`-m immediate`) and deletes its
    /// temp dir when the test process exits (after all tests, a failing one
    /// included: the harness exits through `exit`).
    pub fn shared() -> &'static TestPostgres {
        SHARED.get_or_init(|| {
            let pg = TestPostgres::start();
            // SAFETY: registers a plain `extern "C" fn` with no arguments.
            let registered = unsafe { nix::libc::atexit(stop_shared) };
            assert_eq!(registered, 0, "atexit: cannot register the PostgreSQL stop");
            pg
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The server's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The cluster's temp dir (data, log and socket); deleted on drop.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn pg_ctl_start(&self) -> Output {
        // fsync off: a test cluster never outlives an OS crash, and syncing
        // would slow every test on a shared disk. synchronous_commit stays on.
        // Small shared buffers: several clusters run at once (one per test).
        let opts = format!(
            "-k {} -h 127.0.0.1 -p {} -c fsync=off -c full_page_writes=off -c shared_buffers=16MB \
             -c max_connections={MAX_CONNECTIONS}",
            self.dir.path().display(),
            self.port
        );
        let data = self.data_dir();
        let log = self.log_path();
        self.run_pg(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                START_WAIT_SECS.as_ref(),
                "-o".as_ref(),
                opts.as_ref(),
                "start".as_ref(),
            ],
        )
    }

    /// Runs a PostgreSQL program as the unprivileged user when we are root.
    fn run_pg(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let path = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(r) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", r.uid))
                    .arg(format!("--regid={}", r.gid))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(&path);
                c
            }
            None => Command::new(&path),
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env_remove("PGDATA")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", path.display()))
    }

    /// Stops the database (`pg_ctl stop -m fast`: every connection is
    /// terminated, as when the database goes down under the instances);
    /// [`TestPostgres::start_again`] brings it back on the same port.
    pub fn stop(&self) {
        let data = self.data_dir();
        let out = self.run_pg(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                START_WAIT_SECS.as_ref(),
                "stop".as_ref(),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed:\n{}",
            output_text(&out)
        );
    }

    /// Starts the database again after [`TestPostgres::stop`], on the same
    /// port and with the same data.
    pub fn start_again(&self) {
        let out = self.pg_ctl_start();
        assert!(
            out.status.success(),
            "PostgreSQL did not start again:\n{}\n{}",
            output_text(&out),
            self.log()
        );
    }

    /// URL of the `postgres` database as the superuser, over TCP.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// URL of database `db` as the superuser, over TCP with the password.
    pub fn url_for(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// The URL of database `db` over the Unix socket in the cluster's temp
    /// dir. A server in another network namespace (a netlab host) cannot
    /// reach this namespace's 127.0.0.1, but a socket path is a file, which
    /// every namespace sees.
    pub fn socket_url_for(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@/{db}?host={}&port={}",
            self.password,
            self.dir.path().display(),
            self.port
        )
    }

    /// Creates an empty database with a new name and returns its URL, so
    /// one cluster serves several independent tests.
    pub fn fresh_database(&self) -> String {
        let name = self.create_database();
        self.url_for(&name)
    }

    /// As [`TestPostgres::fresh_database`], with the URL through the socket
    /// dir ([`TestPostgres::socket_url_for`]).
    pub fn fresh_socket_database(&self) -> String {
        let name = self.create_database();
        self.socket_url_for(&name)
    }

    fn create_database(&self) -> String {
        let name = format!("t{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// Runs SQL through `psql` on database `db` (as the superuser, over the
    /// socket dir); panics with psql's output when it fails. Returns stdout
    /// (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", db, "-c", sql])
            .env("PGPASSWORD", &self.password)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed:\n{}",
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `pg_ctl stop -m immediate` (the data is thrown away next, nothing to
    /// flush), waiting until the server has exited.
    fn discard(&self) {
        let data = self.data_dir();
        let _ = self.run_pg(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.discard();
    }
}

/// The `atexit` hook of [`TestPostgres::shared`]: stops the shared cluster
/// and deletes its temp dir (the static's `TempDir` is never dropped).
extern "C" fn stop_shared() {
    if let Some(pg) = SHARED.get() {
        pg.discard();
        let _ = std::fs::remove_dir_all(pg.dir.path());
    }
}

/// The newest installed major version's bin dir.
fn find_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(PG_LIB)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no {PG_LIB}/*/bin/initdb): these tests need a real \
             server; `apt-get install postgresql` (.ci/run installs it)"
        ),
    }
}

/// Root may not run initdb: pick an unprivileged system user.
fn run_as() -> Option<RunAs> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(u)) = nix::unistd::User::from_name(name) {
            return Some(RunAs {
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            });
        }
    }
    panic!("running as root, and neither user `postgres` nor `nobody` exists to run PostgreSQL");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a free port")
        .port()
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .expect("read /dev/urandom");
    u128::from_le_bytes(b)
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
