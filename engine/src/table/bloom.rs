//! Bloom filter over user-key hashes ([`crate::format::key_hash`]),
//! cache-local: every probe for one key falls in the same 64-byte line, so
//! a lookup costs one cache miss.
//!
//! Layout: `lines: [[u8; 64]; L] | probes: u8`, `L >= 1`. Bit `i` of a line
//! is `line[i / 8] >> (i % 8) & 1`. A key with 64-bit hash `h` uses line
//! `reduce(h, L)` where `reduce(x, n) = (x * n) >> 64` (128-bit product), and
//! sets `probes` bits in it: starting from `x = h.rotate_left(32)`, each probe
//! does `x = x * 0x9E3779B97F4A7C15` (wrapping) and uses bit `x >> 55`.

/// Most probes a filter may declare; more is never useful.
pub(crate) const MAX_PROBES: u8 = 30;

/// Bytes per line (one CPU cache line).
const LINE_BYTES: usize = 64;

/// Multiplier stepping from one probe to the next (odd, so a bijection).
const PROBE_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// Probe count that minimises false positives for `bits_per_key`.
fn probes_for(bits_per_key: usize) -> u8 {
    // k = bits_per_key * ln 2, rounded; 69/100 approximates ln 2.
    let k = (bits_per_key * 69 + 50) / 100;
    k.clamp(1, usize::from(MAX_PROBES)) as u8
}

/// Maps a 64-bit value uniformly onto `0..n`.
#[inline]
fn reduce(x: u64, n: u64) -> u64 {
    ((u128::from(x) * u128::from(n)) >> 64) as u64
}

/// Number of lines for `keys` keys at `bits_per_key`.
fn lines_for(keys: usize, bits_per_key: usize) -> usize {
    keys.saturating_mul(bits_per_key)
        .div_ceil(LINE_BYTES * 8)
        .max(1)
}

/// Size of the filter [`build`] writes for `keys` keys.
pub(crate) fn encoded_len(keys: usize, bits_per_key: usize) -> usize {
    lines_for(keys, bits_per_key) * LINE_BYTES + 1
}

/// Appends a filter holding `hashes` (duplicates allowed) to `out`.
/// Precondition: `bits_per_key > 0`.
pub(crate) fn build(hashes: &[u64], bits_per_key: usize, out: &mut Vec<u8>) {
    assert!(bits_per_key > 0, "a filter needs at least one bit per key");
    let lines = lines_for(hashes.len(), bits_per_key);
    let probes = probes_for(bits_per_key);
    let start = out.len();
    out.resize(start + lines * LINE_BYTES, 0);
    let array = &mut out[start..];
    for &h in hashes {
        let base = reduce(h, lines as u64) as usize * LINE_BYTES;
        let line = &mut array[base..base + LINE_BYTES];
        let mut x = h.rotate_left(32);
        for _ in 0..probes {
            x = x.wrapping_mul(PROBE_MUL);
            let bit = (x >> 55) as usize;
            line[bit / 8] |= 1 << (bit % 8);
        }
    }
    out.push(probes);
    debug_assert_eq!(out.len() - start, encoded_len(hashes.len(), bits_per_key));
}

/// Checks a filter's shape; `Err` names what is wrong.
pub(crate) fn validate(filter: &[u8]) -> Result<(), &'static str> {
    match filter.split_last() {
        None => Err("empty bloom filter"),
        Some((_, [])) => Err("bloom filter has no bits"),
        Some((_, lines)) if lines.len() % LINE_BYTES != 0 => Err("bloom filter is not whole lines"),
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
    let lines = array.len() / LINE_BYTES;
    if lines == 0 || probes == 0 || probes > MAX_PROBES {
        return true;
    }
    let base = reduce(hash, lines as u64) as usize * LINE_BYTES;
    let Some(line) = array.get(base..base + LINE_BYTES) else {
        return true;
    };
    let mut x = hash.rotate_left(32);
    for _ in 0..probes {
        x = x.wrapping_mul(PROBE_MUL);
        let bit = (x >> 55) as usize;
        if line[bit / 8] & (1 << (bit % 8)) == 0 {
            return false;
        }
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
        // A standard filter gives ~0.8% at 10 bits/key, ~2.2% at 8, ~9% at 5;
        // the cache-local layout costs a little more.
        for (bpk, max_rate) in [(10usize, 0.015), (8, 0.035), (5, 0.13)] {
            let mut f = Vec::new();
            build(&hashes(0..10_000), bpk, &mut f);
            let probes = hashes(1_000_000..1_100_000);
            let fp = probes.iter().filter(|&&h| may_contain(&f, h)).count();
            let rate = fp as f64 / probes.len() as f64;
            eprintln!("bits/key {bpk}: false-positive rate {rate:.4}");
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
        assert!(validate(&[0, 1]).is_err());
        let mut line = vec![0u8; 64];
        line.push(0);
        assert!(validate(&line).is_err());
        *line.last_mut().unwrap() = 31;
        assert!(validate(&line).is_err());
        assert!(may_contain(&line, 1));
        *line.last_mut().unwrap() = 3;
        validate(&line).unwrap();
        assert!(!may_contain(&line, 1));
        assert!(may_contain(&[], 1));
        assert!(may_contain(&[0, 1], 1));
    }
}
