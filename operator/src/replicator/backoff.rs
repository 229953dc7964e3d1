//! How long the replicator waits before it reconnects after a failure: exponential from
//! 1 s to 30 s, with "full jitter" (a random wait up to the bound, never below half of it) so
//! that the replicators of many regions do not knock on a recovering cluster together.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

pub const FIRST: Duration = Duration::from_secs(1);
pub const MAX: Duration = Duration::from_secs(30);

/// The bound of the wait after `failures` failures in a row (1 s, 2 s, 4 s, ... 30 s).
pub fn bound(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
    FIRST.saturating_mul(factor).min(MAX)
}

/// A wait between half the bound and the bound; `random` is any u64.
pub fn wait(failures: u32, random: u64) -> Duration {
    let bound = bound(failures);
    let half = bound / 2;
    let spread = u64::try_from((bound - half).as_millis()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_millis(random % spread)
}

/// A random u64 from the standard library's per-process random hashing keys.
pub fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_up_to_thirty_seconds() {
        let bounds: Vec<u64> = (0..8).map(|f| bound(f).as_secs()).collect();
        assert_eq!(bounds, [1, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(bound(u32::MAX), MAX);
    }

    #[test]
    fn waits_are_jittered_within_half_and_the_bound() {
        assert_eq!(wait(4, 0), Duration::from_secs(4));
        assert_eq!(wait(4, 3_999), Duration::from_millis(7_999));
        assert_eq!(wait(4, 4_000), Duration::from_secs(4));
        assert_eq!(wait(1, u64::MAX), Duration::from_millis(500 + u64::MAX % 500));
        let waits: std::collections::BTreeSet<Duration> = (0..20).map(|_| wait(6, random())).collect();
        assert!(waits.len() > 1, "random() gave one value 20 times: {waits:?}");
    }
}
