//! Reading a password the way SPEC §6 allows: from the terminal without echo,
//! or one line of stdin with `--password-stdin`; never from an argument.

use std::io::{self, BufRead, IsTerminal};

use p2p_proto::Secret;

/// Reads the password: the first line of stdin when `from_stdin`, otherwise a
/// no-echo prompt on the terminal (asked twice when `confirm`).
pub fn read_password(from_stdin: bool, confirm: bool) -> Result<Secret, String> {
    if from_stdin {
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        let pw = line.strip_suffix('\n').unwrap_or(&line);
        let pw = pw.strip_suffix('\r').unwrap_or(pw);
        return Ok(Secret::new(pw));
    }
    if !io::stdin().is_terminal() && !io::stderr().is_terminal() {
        return Err(
            "no terminal to ask for the password; pass it on stdin with --password-stdin".into(),
        );
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| {
        format!("cannot read the password from the terminal ({e}); use --password-stdin")
    })?;
    if confirm {
        let again = rpassword::prompt_password("Password (again): ")
            .map_err(|e| format!("cannot read the password from the terminal ({e})"))?;
        if again != first {
            return Err("the passwords do not match; nothing was changed".into());
        }
    }
    Ok(Secret::new(first))
}
