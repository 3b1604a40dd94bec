//! Start-up check of `state.db` before anything opens it.
//!
//! SQLite accepts a 0-byte file as an empty database, so a truncated
//! `state.db` would start the server with no resume tokens and no stored
//! broadcasts, without a word: every daemon would be told `bad_token` and
//! nobody would learn why. SQLite itself leaves a 0-byte file in one case:
//! opening a new database creates the file, and nothing is written until the
//! first write (here, switching to WAL), so a first start killed in between
//! leaves 0 bytes. This module creates the file under a temporary name and
//! renames it in only once it holds a valid header, so a 0-byte `state.db`
//! can only be damage, and the server refuses to start on it.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::Path;

use crate::error::{Result, ServerError};
use crate::tokens::{open_db, STATE_DB};

/// Name `state.db` is built under on first start.
const STATE_DB_NEW: &str = ".state.db.new";

/// Refuses an empty `state.db`; creates a valid one if there is none.
pub(crate) fn prepare_state_db(data_dir: &Path) -> Result<()> {
    let path = data_dir.join(STATE_DB);
    match fs::metadata(&path) {
        Ok(m) if m.len() == 0 => Err(ServerError::Damaged {
            path,
            problem: "empty (0 bytes), so its resume tokens and stored broadcasts are \
                      lost; restore it from a backup, or delete it to start with none (every \
                      daemon must then log in again with its password)"
                .into(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => create(data_dir),
        Err(e) => Err(ServerError::file(&path)(e)),
    }
}

fn create(data_dir: &Path) -> Result<()> {
    let tmp = data_dir.join(STATE_DB_NEW);
    for stale in ["", "-wal", "-shm"] {
        let p = data_dir.join(format!("{STATE_DB_NEW}{stale}"));
        match fs::remove_file(&p) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(ServerError::file(&p)(e)),
            _ => {}
        }
    }
    // Switching to WAL writes the header; closing checkpoints and removes
    // the temporary WAL, so the renamed file is a complete database.
    drop(open_db(&tmp)?);
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(ServerError::file(&tmp))?;
    let path = data_dir.join(STATE_DB);
    fs::rename(&tmp, &path).map_err(ServerError::file(&path))?;
    File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(ServerError::file(data_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_makes_a_non_empty_database() {
        let dir = tempfile::tempdir().unwrap();
        prepare_state_db(dir.path()).unwrap();
        let path = dir.path().join(STATE_DB);
        assert!(fs::metadata(&path).unwrap().len() > 0);
        let mode: String = open_db(&path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        // Only the database itself is left.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [STATE_DB]);
        // A second start leaves it alone.
        prepare_state_db(dir.path()).unwrap();
    }

    #[test]
    fn an_empty_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        File::create(dir.path().join(STATE_DB)).unwrap();
        let err = prepare_state_db(dir.path()).unwrap_err().to_string();
        assert!(err.contains("empty (0 bytes)"), "{err}");
        assert!(err.contains("restore it from a backup"), "{err}");
    }
}
