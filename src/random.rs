//! The one source of randomness: a fraction for jitter (API retry back-off, the prober's
//! start-up spread).
//!
//! Owns [`fraction`]: std's randomly keyed hasher, drawn anew on every call, so no RNG
//! dependency is needed for something this unimportant (not cryptographic). Callers pass the
//! fraction into pure arithmetic (`kube::backoff`, `probe::manager::startup_jitter`).

/// A uniform draw from `[0, 1)`, different on every call.
pub fn fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn fractions_are_in_range_and_vary() {
        let samples: Vec<f64> = (0..64).map(|_| super::fraction()).collect();
        assert!(samples.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(samples.windows(2).any(|w| w[0] != w[1]));
    }
}
