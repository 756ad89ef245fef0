//! Deterministic keys and values.
//!
//! Key `i` is 16 bytes: an 8-byte bijective mix of `i` (so inserting
//! `0..n` in order writes keys in a random order, with no permutation table
//! to hold) followed by `i` big-endian (so keys are unique even if the mix
//! were not). Every byte is written big-endian. Values are windows into a
//! fixed pool of pseudo-random bytes, chosen by `i`, so they are
//! incompressible, cheap to produce and can be checked after a read.

/// Length of every key in bytes.
pub const KEY_LEN: usize = 16;

/// Bytes in the random pool values are cut from.
const POOL_LEN: usize = 1 << 20;
/// Longest value the pool can serve.
pub const VALUE_LEN_MAX: usize = 64 << 10;

/// The splitmix64 finalizer: a bijection on `u64` with good avalanche.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The key with index `i`.
pub fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(&mix64(i).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// A small seeded generator (splitmix64) for choosing which keys to read.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence depends only on `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// A uniform value in `0..n` (`n > 0`; the modulo bias is below 2^-40
    /// for the counts used here).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }
}

/// Source of value bytes.
#[derive(Debug)]
pub struct ValuePool {
    bytes: Vec<u8>,
}

impl ValuePool {
    /// Fills the pool from a fixed seed.
    pub fn new() -> ValuePool {
        let mut rng = Rng::new(0x5E77_BE4C);
        let mut bytes = Vec::with_capacity(POOL_LEN + VALUE_LEN_MAX + 8);
        while bytes.len() < POOL_LEN + VALUE_LEN_MAX {
            bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        ValuePool { bytes }
    }

    /// The value of length `len` stored under key index `i`.
    pub fn value(&self, i: u64, len: usize) -> &[u8] {
        assert!(
            len <= VALUE_LEN_MAX,
            "value length {len} above {VALUE_LEN_MAX}"
        );
        let start = (mix64(i ^ 0xA5A5_A5A5) % POOL_LEN as u64) as usize;
        &self.bytes[start..start + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_are_unique_and_unordered() {
        let keys: Vec<_> = (0..10_000).map(key).collect();
        let set: HashSet<_> = keys.iter().collect();
        assert_eq!(set.len(), keys.len());
        let ascending = keys.windows(2).filter(|w| w[0] < w[1]).count();
        assert!(ascending > 4_000 && ascending < 6_000, "{ascending}");
    }

    #[test]
    fn values_are_deterministic() {
        let a = ValuePool::new();
        let b = ValuePool::new();
        assert_eq!(a.value(7, 1024), b.value(7, 1024));
        assert_ne!(a.value(7, 128), a.value(8, 128));
    }
}
