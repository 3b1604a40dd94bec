//! Seedable randomness for tests that replay a run from its printed seed
//! (the crash cycles), and their knobs from the environment.

/// splitmix64: a small, seedable generator (test randomness, not crypto).
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in 1..=n.
    pub fn upto(&mut self, n: u64) -> u64 {
        1 + self.next_u64() % n
    }
}

/// Environment variable `name` parsed, or `default` when unset or not a
/// value of `T`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
