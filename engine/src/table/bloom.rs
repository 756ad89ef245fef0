//! Bloom filter over user-key hashes ([`crate::format::key_hash`]).
//!
//! Layout: `bits: [u8; m/8] | probes: u8`. Bit `i` is `bits[i / 8] >> (i % 8)
//! & 1`. A key with 64-bit hash `h` sets the `probes` bits
//! `reduce(h + j * delta, m)` for `j in 0..probes` (double hashing, wrapping
//! u64 arithmetic), where `delta = h.rotate_right(32) | 1` and
//! `reduce(x, m) = (x * m) >> 64` computed in 128 bits.

/// Most probes a filter may declare; more is never useful.
pub(crate) const MAX_PROBES: u8 = 30;

/// Smallest bit array written, so tiny tables still filter well.
const MIN_BITS: usize = 64;

/// Probe count that minimises false positives for `bits_per_key`.
fn probes_for(bits_per_key: usize) -> u8 {
    // k = bits_per_key * ln 2, rounded; 69/100 approximates ln 2.
    let k = (bits_per_key * 69 + 50) / 100;
    k.clamp(1, usize::from(MAX_PROBES)) as u8
}

/// Maps a 64-bit value uniformly onto `0..m`.
#[inline]
fn reduce(x: u64, m: u64) -> u64 {
    ((u128::from(x) * u128::from(m)) >> 64) as u64
}

/// Appends a filter holding `hashes` (duplicates allowed) to `out`.
/// Precondition: `bits_per_key > 0`.
pub(crate) fn build(hashes: &[u64], bits_per_key: usize, out: &mut Vec<u8>) {
    assert!(bits_per_key > 0, "a filter needs at least one bit per key");
    let bits = hashes.len().saturating_mul(bits_per_key).max(MIN_BITS);
    let bytes = bits.div_ceil(8);
    let m = (bytes * 8) as u64;
    let probes = probes_for(bits_per_key);
    let start = out.len();
    out.resize(start + bytes, 0);
    let array = &mut out[start..];
    for &h in hashes {
        let delta = h.rotate_right(32) | 1;
        let mut x = h;
        for _ in 0..probes {
            let bit = reduce(x, m) as usize;
            array[bit / 8] |= 1 << (bit % 8);
            x = x.wrapping_add(delta);
        }
    }
    out.push(probes);
    debug_assert_eq!(out.len() - start, encoded_len(hashes.len(), bits_per_key));
}

/// Size of the filter [`build`] writes for `keys` keys.
pub(crate) fn encoded_len(keys: usize, bits_per_key: usize) -> usize {
    keys.saturating_mul(bits_per_key).max(MIN_BITS).div_ceil(8) + 1
}

/// Checks a filter's shape; `Err` names what is wrong.
pub(crate) fn validate(filter: &[u8]) -> Result<(), &'static str> {
    match filter.split_last() {
        None => Err("empty bloom filter"),
        Some((_, [])) => Err("bloom filter has no bits"),
        Some((&k, _)) if k == 0 || k > MAX_PROBES => Err("bloom filter probe count out of range"),
        Some(_) => Ok(()),
    }
}

/// False if the key with hash `hash` is certainly absent from `filter`.
/// A malformed filter (which [`validate`] rejects) answers true.
#[inline]
pub(crate) fn may_contain(filter: &[u8], hash: u64) -> bool {
    let Some((&probes, array)) = filter.split_last() else {
        return true;
    };
    if array.is_empty() || probes == 0 || probes > MAX_PROBES {
        return true;
    }
    let m = (array.len() * 8) as u64;
    let delta = hash.rotate_right(32) | 1;
    let mut x = hash;
    for _ in 0..probes {
        let bit = reduce(x, m) as usize;
        if array[bit / 8] & (1 << (bit % 8)) == 0 {
            return false;
        }
        x = x.wrapping_add(delta);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::key_hash;

    fn hashes(range: std::ops::Range<u32>) -> Vec<u64> {
        range
            .map(|i| key_hash(format!("user-key-{i}").as_bytes()))
            .collect()
    }

    #[test]
    fn no_false_negatives() {
        for n in [0u32, 1, 10, 1000] {
            let hs = hashes(0..n);
            let mut f = Vec::new();
            build(&hs, 10, &mut f);
            assert_eq!(f.len(), encoded_len(n as usize, 10));
            validate(&f).unwrap();
            assert!(hs.iter().all(|&h| may_contain(&f, h)));
        }
    }

    #[test]
    fn false_positive_rate_tracks_bits_per_key() {
        // Theory: ~0.8% at 10 bits/key, ~2.2% at 8, ~9% at 5 (0.6185^bpk).
        for (bpk, max_rate) in [(10usize, 0.015), (8, 0.035), (5, 0.13)] {
            let mut f = Vec::new();
            build(&hashes(0..10_000), bpk, &mut f);
            let probes = hashes(1_000_000..1_100_000);
            let fp = probes.iter().filter(|&&h| may_contain(&f, h)).count();
            let rate = fp as f64 / probes.len() as f64;
            assert!(rate < max_rate, "bpk {bpk}: fp rate {rate}");
            assert!(
                rate > max_rate / 20.0,
                "bpk {bpk}: fp rate {rate} suspiciously low"
            );
        }
    }

    #[test]
    fn malformed_filters_answer_true() {
        assert!(validate(&[]).is_err());
        assert!(validate(&[7]).is_err());
        assert!(validate(&[0, 0]).is_err());
        assert!(validate(&[0, 31]).is_err());
        assert!(may_contain(&[], 1));
        assert!(may_contain(&[0, 0], 1));
        assert!(!may_contain(&[0, 1], 1));
    }
}
