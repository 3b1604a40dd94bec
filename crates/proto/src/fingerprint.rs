//! The server certificate fingerprint people compare and daemons pin:
//! `SHA256:` and the lowercase hex SHA-256 of the DER certificate.

use std::fmt;
use std::str::FromStr;

/// A certificate fingerprint in its one canonical form, `SHA256:<64
/// lowercase hex digits>`. Made from a certificate ([`Fingerprint::of_cert`])
/// or parsed from what a person typed ([`Fingerprint::parse`]); displayed
/// (and compared) canonically.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

/// A string that is not a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint must look like SHA256:<64 hex digits>")]
pub struct BadFingerprint;

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_cert(der: &[u8]) -> Fingerprint {
        use sha2::Digest;
        Fingerprint(format!("SHA256:{}", hex::encode(sha2::Sha256::digest(der))))
    }

    /// Normalises what a person typed — `SHA256:`/`sha256:` or no prefix,
    /// any case, `:` between bytes allowed — or `None` if it is not one.
    pub fn parse(s: &str) -> Option<Fingerprint> {
        let hexpart = s
            .strip_prefix("SHA256:")
            .or_else(|| s.strip_prefix("sha256:"))
            .unwrap_or(s)
            .replace(':', "")
            .to_ascii_lowercase();
        (hexpart.len() == 64 && hexpart.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Fingerprint(format!("SHA256:{hexpart}")))
    }

    /// Only the canonical form (what p2pd writes), as a saved pin must be.
    pub fn parse_canonical(s: &str) -> Option<Fingerprint> {
        Fingerprint::parse(s).filter(|fp| fp.0 == s)
    }

    /// The canonical form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fingerprint::parse(s).ok_or(BadFingerprint)
    }
}

impl From<Fingerprint> for String {
    fn from(fp: Fingerprint) -> String {
        fp.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fingerprints_normalise() {
        let fp = Fingerprint::of_cert(b"cert");
        assert_eq!(Fingerprint::parse(fp.as_str()), Some(fp.clone()));
        let upper = fp
            .as_str()
            .to_ascii_uppercase()
            .replace("SHA256:", "sha256:");
        assert_eq!(Fingerprint::parse(&upper), Some(fp.clone()));
        assert_eq!(Fingerprint::parse_canonical(&upper), None);
        assert_eq!(Fingerprint::parse_canonical(fp.as_str()), Some(fp.clone()));
        assert_eq!(Fingerprint::parse("SHA256:abc"), None);
        assert_eq!("SHA256:abc".parse::<Fingerprint>(), Err(BadFingerprint));
        assert_eq!(fp.to_string(), fp.as_str());
        assert!(fp.as_str().starts_with("SHA256:") && fp.as_str().len() == 7 + 64);
    }

    proptest! {
        #[test]
        fn parsing_is_idempotent(s in "(SHA256:|sha256:)?[0-9a-fA-F:]{60,70}|.{0,80}") {
            if let Some(fp) = Fingerprint::parse(&s) {
                prop_assert_eq!(Fingerprint::parse_canonical(fp.as_str()), Some(fp.clone()));
            }
        }
    }
}
