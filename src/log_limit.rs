//! Log lines that cannot flood the log: a warning is written at most once per interval, and the
//! next one that is written says how many were held back meanwhile.
//!
//! Bad input from the network (a garbage datagram, a lying octet count, a file that cannot be
//! read) is logged through a [`RateLimitedWarning`], so a sender that floods the gateway with
//! garbage costs one log line per interval, not one per message (rsyslog's error messages are
//! rate-limited the same way). A leaf: it uses nothing of the crate.
//!
//! ```
//! use std::time::Duration;
//! use logtail::log_limit::RateLimitedWarning;
//!
//! static BAD_FRAME: RateLimitedWarning = RateLimitedWarning::new(Duration::from_secs(10));
//! for n in 0..1000 {
//!     // Written once; the next one written after 10 s adds "(999 similar warnings held back)".
//!     BAD_FRAME.warn(|| format!("bad frame {n}"));
//! }
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A warning that is logged at most once per interval, with the count of the ones held back.
#[derive(Debug)]
pub struct RateLimitedWarning {
    interval: Duration,
    /// When one was last written, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedWarning {
    /// A warning logged at most once per `interval`.
    pub const fn new(interval: Duration) -> Self {
        RateLimitedWarning {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Logs `message()` now unless one was logged within the interval; then only counts it.
    /// `message` is only called when the line is written, so a held-back warning costs no
    /// formatting.
    pub fn warn(&self, message: impl FnOnce() -> String) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        let due = state
            .0
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if due {
            let held_back = std::mem::take(&mut state.1);
            state.0 = Some(now);
            drop(state);
            let text = message();
            if held_back > 0 {
                tracing::warn!("{text} ({held_back} similar warnings held back)");
            } else {
                tracing::warn!("{text}");
            }
        } else {
            state.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_warning_counts_what_it_holds_back() {
        let w = RateLimitedWarning::new(Duration::from_secs(3600));
        let mut calls = 0;
        for _ in 0..5 {
            w.warn(|| {
                calls += 1;
                "bad input".to_string()
            });
        }
        assert_eq!(calls, 1);
        assert_eq!(w.state.lock().unwrap().1, 4);
    }
}
