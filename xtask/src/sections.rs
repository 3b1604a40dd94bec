//! The man page sections clap does not know about: EXIT STATUS, FILES,
//! ENVIRONMENT, SIGNALS and EXAMPLES, for each program's main page. Each
//! entry is (term, text); EXAMPLES are (comment, command line).

/// A program's extra sections.
pub struct Sections {
    /// `(code, meaning)`.
    pub exit: &'static [(&'static str, &'static str)],
    /// `(path, what)`.
    pub files: &'static [(&'static str, &'static str)],
    /// `(variable, effect)`.
    pub environment: &'static [(&'static str, &'static str)],
    /// `(signal, effect)`.
    pub signals: &'static [(&'static str, &'static str)],
    /// `(what it does, command line)`.
    pub examples: &'static [(&'static str, &'static str)],
}

/// The sections of `program`'s main page, if it has any.
pub fn for_program(program: &str) -> Option<&'static Sections> {
    match program {
        "p2pctl" => Some(&P2PCTL),
        "p2pd" => Some(&P2PD),
        "p2p-server" => Some(&SERVER),
        _ => None,
    }
}

const LOG_ENV: (&str, &str) = (
    "RUST_LOG",
    "log filter when --log-level is not given (default info)",
);
const NO_COLOR: (&str, &str) = ("NO_COLOR", "when set, no colour in log output");
const JOURNAL: (&str, &str) = (
    "JOURNAL_STREAM",
    "set by systemd; logs go to the journal only when it names the stderr actually open",
);

static P2PCTL: Sections = Sections {
    exit: &[
        ("0", "success"),
        ("1", "anything else"),
        ("2", "usage: bad arguments, bad user name, empty message"),
        ("3", "p2pd is not running or not reachable"),
        (
            "4",
            "not logged in, or the server is unreachable (p2pd keeps trying if it ever logged in there)",
        ),
        ("5", "the peer refused or did not answer in time"),
        ("6", "user not online, or no session with them"),
    ],
    files: &[(
        "$XDG_RUNTIME_DIR/p2p/p2pd.sock",
        "the daemon's control socket (/tmp/p2p-UID/p2pd.sock without XDG_RUNTIME_DIR)",
    )],
    environment: &[
        ("P2PD_SOCKET", "the control socket, as --socket"),
        ("XDG_RUNTIME_DIR", "where the control socket is by default"),
        ("TZ", "the time zone times are shown in"),
        NO_COLOR,
    ],
    signals: &[(
        "SIGINT, SIGTERM",
        "p2pctl exits; what it already asked p2pd to do carries on in the daemon",
    )],
    examples: &[
        (
            "first login: shows the server's certificate and asks before the password",
            "p2pctl login --server 10.0.0.5 --user alice",
        ),
        (
            "without a terminal, pin the certificate the operator gave",
            "printf 'pw\\n' | p2pctl login --server 10.0.0.5 --user alice --password-stdin --fingerprint SHA256:...",
        ),
        ("log in again as before", "p2pctl login"),
        ("ask bob for a session, then talk", "p2pctl connect bob && p2pctl send bob hello"),
        ("one message per line of a file", "p2pctl send bob - < notes.txt"),
        ("scripts read JSON", "p2pctl --json status"),
    ],
};

static P2PD: Sections = Sections {
    exit: &[
        ("0", "stopped by SIGTERM or SIGINT"),
        (
            "1",
            "could not start or run: bad config, damaged state, control socket or state directory in use by another p2pd",
        ),
        ("2", "usage: bad arguments or log level"),
    ],
    files: &[
        ("$XDG_CONFIG_HOME/p2p/p2pd.toml", "configuration (--config)"),
        (
            "$XDG_STATE_HOME/p2p/",
            "state directory (--state-dir): identity.json, session.json, known_servers.json, known_peers.json, inbox.db, lock",
        ),
        (
            "$XDG_RUNTIME_DIR/p2p/p2pd.sock",
            "control socket (--socket); /tmp/p2p-UID/p2pd.sock without XDG_RUNTIME_DIR",
        ),
    ],
    environment: &[
        ("P2PD_SOCKET", "the control socket, as --socket"),
        (
            "XDG_CONFIG_HOME, XDG_STATE_HOME, XDG_RUNTIME_DIR",
            "where the files above are by default",
        ),
        ("NOTIFY_SOCKET", "set by systemd: readiness and status are reported there"),
        ("LISTEN_FDS, LISTEN_PID", "set by systemd socket activation: the control socket"),
        JOURNAL,
        LOG_ENV,
        NO_COLOR,
    ],
    signals: &[
        (
            "SIGTERM, SIGINT",
            "stop: sessions say goodbye, the control socket is removed, exit 0",
        ),
        ("SIGHUP", "re-read the configuration file; sessions stay up"),
    ],
    examples: &[
        ("run in the foreground", "p2pd"),
        ("a second daemon with its own state", "p2pd --state-dir /tmp/bob --socket /tmp/bob.sock"),
        ("as a user service", "systemctl --user enable --now p2pd.socket p2pd.service"),
    ],
};

static SERVER: Sections = Sections {
    exit: &[
        ("0", "stopped by SIGTERM or SIGINT, or the subcommand succeeded"),
        ("1", "could not start, or the subcommand failed"),
        (
            "2",
            "usage: bad arguments or config file (check-config: not usable), no terminal for a password",
        ),
    ],
    files: &[
        ("/etc/p2p-server/p2p-server.toml", "a configuration file, read with --config"),
        (
            "$STATE_DIRECTORY or $XDG_DATA_HOME/p2p-server/",
            "data directory (--data-dir): users.csv, state.db, tls-cert.pem, tls-key.pem, the admin socket",
        ),
    ],
    environment: &[
        ("STATE_DIRECTORY", "set by systemd: the data directory"),
        ("NOTIFY_SOCKET", "set by systemd: readiness and status are reported there"),
        JOURNAL,
        LOG_ENV,
        NO_COLOR,
    ],
    signals: &[
        ("SIGTERM, SIGINT", "stop, closing every session"),
        (
            "SIGHUP",
            "re-read the configuration, TLS certificate and accounts without dropping sessions",
        ),
    ],
    examples: &[
        ("serve on the default port", "p2p-server"),
        ("add an account", "p2p-server user add alice"),
        ("what clients pin", "p2p-server fingerprint"),
        ("who is online", "p2p-server sessions"),
        ("validate a config file", "p2p-server --config /etc/p2p-server/p2p-server.toml check-config"),
    ],
};

/// roff text: backslashes and hyphens escaped, a leading `.` or `'` made
/// literal.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn tagged(out: &mut String, title: &str, items: &[(&str, &str)]) {
    out.push_str(&format!(".SH \"{title}\"\n"));
    for (term, text) in items {
        out.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", roff(term), roff(text)));
    }
}

/// The sections as roff.
pub fn render(s: &Sections) -> String {
    let mut out = String::new();
    tagged(&mut out, "EXIT STATUS", s.exit);
    tagged(&mut out, "FILES", s.files);
    tagged(&mut out, "ENVIRONMENT", s.environment);
    tagged(&mut out, "SIGNALS", s.signals);
    out.push_str(".SH \"EXAMPLES\"\n");
    for (what, line) in s.examples {
        out.push_str(&format!(
            ".PP\n{}:\n.IP\n.nf\n{}\n.fi\n",
            roff(what),
            roff(line)
        ));
    }
    out
}

/// `page` (clap_mangen's) with its EXTRA section (the `--help` epilogue,
/// which for p2pctl is the exit codes) replaced by `sections`, placed
/// before VERSION/AUTHORS when there are any.
pub fn splice(page: &str, sections: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    let mut placed = false;
    for line in page.lines() {
        if line.starts_with(".SH ") {
            skipping = line == ".SH EXTRA";
            if !placed && (skipping || line == ".SH VERSION" || line == ".SH AUTHORS") {
                out.push_str(sections);
                placed = true;
            }
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !placed {
        out.push_str(sections);
    }
    out
}
