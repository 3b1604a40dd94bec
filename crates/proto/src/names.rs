//! User name and password rules (SPEC §3), shared so that the server, the
//! admin command and the CLI refuse the same things with the same words.

use crate::limits::{MAX_PASSWORD_LEN, MAX_USERNAME_LEN, MIN_PASSWORD_LEN};

/// Why a user name or password was refused; the text is shown to people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or longer than [`MAX_USERNAME_LEN`].
    #[error("user name must be 1 to {MAX_USERNAME_LEN} characters")]
    Length,
    /// Starts with something other than a letter or digit.
    #[error("user name must start with a lowercase letter or a digit")]
    Start,
    /// Holds a character outside `a-z 0-9 _ . -`.
    #[error("user name may only contain a-z, 0-9, '_', '.' and '-' (found {0:?})")]
    Char(char),
    /// Password shorter than [`MIN_PASSWORD_LEN`] bytes.
    #[error("password must be at least {MIN_PASSWORD_LEN} bytes")]
    PasswordShort,
    /// Password longer than [`MAX_PASSWORD_LEN`] bytes.
    #[error("password must be at most {MAX_PASSWORD_LEN} bytes")]
    PasswordLong,
}

/// Checks a user name: 1–32 characters of `a-z 0-9 _ . -`, starting with a
/// letter or digit.
pub fn validate_username(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_USERNAME_LEN {
        return Err(NameError::Length);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
    {
        return Err(NameError::Char(c));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(NameError::Start);
    }
    Ok(())
}

/// Checks a password's length (bytes, not characters).
pub fn validate_password(password: &str) -> Result<(), NameError> {
    match password.len() {
        n if n < MIN_PASSWORD_LEN => Err(NameError::PasswordShort),
        n if n > MAX_PASSWORD_LEN => Err(NameError::PasswordLong),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spec_names() {
        for n in ["alice", "bob2", "0day", "a", "x.y-z_w", &"a".repeat(32)] {
            assert_eq!(validate_username(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate_username(""), Err(NameError::Length));
        assert_eq!(validate_username(&"a".repeat(33)), Err(NameError::Length));
        assert_eq!(validate_username("_alice"), Err(NameError::Start));
        assert_eq!(validate_username(".x"), Err(NameError::Start));
        assert_eq!(validate_username("Alice"), Err(NameError::Char('A')));
        assert_eq!(validate_username("al ice"), Err(NameError::Char(' ')));
        assert_eq!(validate_username("bob,1"), Err(NameError::Char(',')));
        assert_eq!(validate_username("bøb"), Err(NameError::Char('ø')));
    }

    #[test]
    fn password_length_is_in_bytes() {
        assert_eq!(validate_password("1234567"), Err(NameError::PasswordShort));
        assert_eq!(validate_password("12345678"), Ok(()));
        assert_eq!(validate_password("ééé"), Err(NameError::PasswordShort));
        assert_eq!(validate_password("éééé"), Ok(()));
        assert_eq!(
            validate_password(&"x".repeat(MAX_PASSWORD_LEN + 1)),
            Err(NameError::PasswordLong)
        );
    }
}
