//! Safety numbers (SPEC §11): what two users compare, in person or over a
//! call, to know that the keys their daemons use are each other's and not
//! an impostor's the server slipped in.
//!
//! The number is SHA-512 over a domain tag and both X25519 public keys, the
//! lower key first, so both sides compute the same number. Its first 60
//! bytes become 12 groups of 5 digits (each group 5 bytes, big-endian,
//! modulo 100 000). 60 decimal digits carry about 199 bits: finding a
//! second key pair that shows the same number is far beyond anyone.

use sha2::{Digest, Sha512};

/// Mixed in first, so the hash of two keys here is never the hash of
/// anything else.
const DOMAIN: &[u8] = b"p2p-broadcast safety number v1\0";

/// Groups of digits in a safety number.
pub const GROUPS: usize = 12;

/// Digits per group.
pub const GROUP_DIGITS: usize = 5;

/// The safety number of two public keys, as `GROUPS` groups of
/// `GROUP_DIGITS` digits separated by single spaces. Symmetric:
/// `safety_number(a, b) == safety_number(b, a)`.
pub fn safety_number(key_a: &[u8], key_b: &[u8]) -> String {
    let (lo, hi) = if key_a <= key_b {
        (key_a, key_b)
    } else {
        (key_b, key_a)
    };
    let mut h = Sha512::new();
    h.update(DOMAIN);
    // Lengths first, so the split between the keys is unambiguous.
    h.update((lo.len() as u32).to_be_bytes());
    h.update(lo);
    h.update((hi.len() as u32).to_be_bytes());
    h.update(hi);
    let digest = h.finalize();
    digest
        .chunks_exact(5)
        .take(GROUPS)
        .map(|c| {
            let v = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            format!("{:0w$}", v % 100_000, w = GROUP_DIGITS)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_on_both_sides_and_shaped_in_groups() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let n = safety_number(&a, &b);
        assert_eq!(n, safety_number(&b, &a));
        let groups: Vec<&str> = n.split(' ').collect();
        assert_eq!(groups.len(), GROUPS);
        assert!(groups
            .iter()
            .all(|g| g.len() == GROUP_DIGITS && g.bytes().all(|c| c.is_ascii_digit())));
    }

    #[test]
    fn any_other_key_gives_another_number() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let mut c = b;
        c[31] ^= 1;
        assert_ne!(safety_number(&a, &b), safety_number(&a, &c));
        assert_ne!(safety_number(&a, &b), safety_number(&b, &b));
    }

    /// Pinned, so a change of the computation (which would make two
    /// versions disagree) cannot pass unnoticed.
    #[test]
    fn a_known_pair_gives_a_known_number() {
        let n = safety_number(&[0u8; 32], &[0xffu8; 32]);
        assert_eq!(
            n,
            "03127 32570 65545 65102 62120 94693 07888 34608 05439 81088 12650 84602"
        );
    }
}
