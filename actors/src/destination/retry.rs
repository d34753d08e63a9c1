//! How long to wait before the next attempt: exponential backoff (the schedule from
//! `backon`) with full jitter (a uniform draw below the step, which spreads retries of
//! many events best), raised to the server's `Retry-After` when it gives one, within a
//! configured ceiling.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;

use super::config::RetryConfig;

/// The delay before attempt number `attempt + 1` (attempt counts from 1).
pub fn delay(config: &RetryConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let step = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(config.min_backoff_ms))
        .with_max_delay(Duration::from_millis(config.max_backoff_ms))
        .with_factor(2.0)
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(Duration::from_millis(config.max_backoff_ms));
    let jittered = step.mul_f64(rand::rng().random::<f64>());
    match retry_after {
        Some(asked) => jittered.max(asked.min(Duration::from_secs(config.max_retry_after_secs))),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_under_the_cap_and_honour_retry_after_within_its_ceiling() {
        let config = RetryConfig {
            min_backoff_ms: 100,
            max_backoff_ms: 1_000,
            retry_window_secs: 60,
            max_retry_after_secs: 30,
        };
        for attempt in 1..20 {
            let step_cap = Duration::from_millis((100u64 << (attempt - 1).min(20)).min(1_000));
            let wait = delay(&config, attempt, None);
            assert!(wait <= step_cap, "attempt {attempt}: {wait:?} over {step_cap:?}");
        }
        assert_eq!(
            delay(&config, 1, Some(Duration::from_secs(10))),
            Duration::from_secs(10)
        );
        assert_eq!(
            delay(&config, 1, Some(Duration::from_secs(3_600))),
            Duration::from_secs(30),
            "clamped"
        );
    }
}
