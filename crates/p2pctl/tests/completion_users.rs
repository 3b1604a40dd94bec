//! User names complete from the daemon (issue 11): the hidden `p2pctl
//! __users` lists who can be named, and the bash script offers them after
//! `connect` (zsh and fish call the same command; unit-tested in
//! `complete.rs`).

use std::process::Command;

use p2p_testkit::{bin, TestDaemon, TestServer};

#[test]
fn bash_completes_online_user_names_after_connect() {
    let server = TestServer::start(&[]);
    let alice = TestDaemon::online(&server, "alice");
    let _bob = TestDaemon::online(&server, "bob");
    let _carol = TestDaemon::online(&server, "carol");

    let out = alice.ctl(&["__users"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bob\ncarol\n",
        "not alice herself"
    );

    let script = alice.ctl(&["completions", "bash"]).stdout;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p2pctl.bash"), script).unwrap();
    let bin_dir = bin("p2pctl").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            "source \"$1\"; COMP_WORDS=(p2pctl connect c); COMP_CWORD=2; \
             _p2pctl_with_users p2pctl c connect; printf '%s\\n' \"${COMPREPLY[@]}\"",
        )
        .arg("bash")
        .arg(dir.path().join("p2pctl.bash"))
        .env("PATH", path)
        .env("P2PD_SOCKET", alice.socket())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "carol\n", "{out:?}");

    // No daemon: no names, no error.
    let out = Command::new(bin("p2pctl"))
        .args(["--socket", "/nonexistent/p2pd.sock", "__users"])
        .output()
        .unwrap();
    assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 0));
}
