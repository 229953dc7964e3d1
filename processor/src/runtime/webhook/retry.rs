//! When a webhook delivery is retried, and when it has failed for good.

use std::time::Duration;

/// Exponential backoff with full jitter: attempt n (from 1) waits a random share of
/// `min(cap, base x 2^(n-1))`, so that many processors retrying one endpoint spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// Attempts in all, the first included.
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(500), cap: Duration::from_secs(30), attempts: 8 }
    }
}

impl Backoff {
    /// The wait before attempt `attempt + 1`, given a uniform draw `jitter` in [0, 1).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let ceiling =
            self.base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX)).min(self.cap);
        // Never less than a tenth of the ceiling: a retry storm of zero waits helps no one.
        ceiling.mul_f64(jitter.clamp(0.0, 1.0).max(0.1))
    }
}

/// What one attempt's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt (no answer, a timeout, 408, 429 or a 5xx), with why.
    Retry(String),
    /// Retrying cannot help (another 4xx: a wrong or revoked URL), with why.
    Fail(String),
}

/// Judges an HTTP status, or the error that kept an answer from coming.
pub fn judge(answer: Result<u16, String>) -> Verdict {
    match answer {
        Ok(status) if (200..300).contains(&status) => Verdict::Delivered,
        Ok(status @ (408 | 429)) => Verdict::Retry(format!("answered {status}")),
        Ok(status) if status >= 500 => Verdict::Retry(format!("answered {status}")),
        Ok(status) => Verdict::Fail(format!("answered {status}")),
        Err(e) => Verdict::Retry(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_with_jitter() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 0.999_999).as_millis(), 499);
        assert_eq!(b.delay(2, 0.5), Duration::from_millis(500));
        assert_eq!(b.delay(4, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(7, 1.0), Duration::from_secs(30), "capped");
        assert_eq!(b.delay(40, 1.0), Duration::from_secs(30), "no overflow");
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(200), "a tenth of the ceiling at least");
    }

    #[test]
    fn answers_are_judged() {
        assert_eq!(judge(Ok(200)), Verdict::Delivered);
        assert_eq!(judge(Ok(204)), Verdict::Delivered);
        assert_eq!(judge(Ok(503)), Verdict::Retry("answered 503".into()));
        assert_eq!(judge(Ok(429)), Verdict::Retry("answered 429".into()));
        assert_eq!(judge(Ok(404)), Verdict::Fail("answered 404".into()));
        assert_eq!(judge(Err("timed out after 10s".into())), Verdict::Retry("timed out after 10s".into()));
    }
}
