//! `packaging/systemd/check-user-units.sh` with binaries under /tmp says
//! why it cannot work (DynamicUser= implies PrivateTmp=, the unit would
//! exit 203/EXEC without a word) instead of failing silently later.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn binaries_under_tmp_are_refused_with_the_reason() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/systemd/check-user-units.sh");
    let bins = tempfile::Builder::new()
        .prefix("p2p-bins")
        .tempdir_in("/tmp")
        .unwrap();
    let out = Command::new("bash")
        .arg(&script)
        .env("P2P_BIN_DIR", bins.path())
        .env_remove("P2P_CHECK_IN_NAMESPACE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("PrivateTmp") && err.contains("203") && err.contains("P2P_BIN_DIR"),
        "{err}"
    );
}
