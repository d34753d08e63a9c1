//! A circuit breaker: after enough consecutive failures, stop sending for a cooldown,
//! then let one trial request through. It spares a struggling destination (and our
//! retry budget) from a storm of requests that would fail anyway.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open {
        until: Instant,
    },
    /// One trial request is allowed; its result closes or reopens the breaker.
    HalfOpen {
        trial_in_flight: bool,
    },
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    consecutive_failures: u32,
    state: BreakerState,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold,
            cooldown,
            consecutive_failures: 0,
            state: BreakerState::Closed,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a request may start now; in half-open state this claims the trial.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen { trial_in_flight: true };
                true
            }
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { trial_in_flight } => {
                if trial_in_flight {
                    false
                } else {
                    self.state = BreakerState::HalfOpen { trial_in_flight: true };
                    true
                }
            }
        }
    }

    /// When an open breaker allows its trial.
    pub fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }

    /// A trial that got no answer (nothing to send after all, or its request abandoned
    /// by a restart): the next request may be the trial.
    pub fn trial_abandoned(&mut self) {
        if let BreakerState::HalfOpen { trial_in_flight: true } = self.state {
            self.state = BreakerState::HalfOpen { trial_in_flight: false };
        }
    }

    pub fn success(&mut self) {
        self.consecutive_failures = 0;
        self.state = BreakerState::Closed;
    }

    pub fn failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let trial_failed = matches!(self.state, BreakerState::HalfOpen { .. });
        if trial_failed || self.consecutive_failures >= self.threshold {
            self.state = BreakerState::Open {
                until: now + self.cooldown,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_then_trials_one_request() {
        let now = Instant::now();
        let mut breaker = Breaker::new(3, Duration::from_secs(5));
        for _ in 0..2 {
            breaker.failure(now);
        }
        assert!(breaker.try_acquire(now), "below the threshold");
        breaker.failure(now);
        assert!(
            !breaker.try_acquire(now + Duration::from_secs(1)),
            "open during the cooldown"
        );
        let later = now + Duration::from_secs(6);
        assert!(breaker.try_acquire(later), "the trial");
        assert!(!breaker.try_acquire(later), "only one trial at a time");
        breaker.trial_abandoned();
        assert!(breaker.try_acquire(later), "a trial that got no answer is tried again");
        breaker.failure(later);
        assert!(
            !breaker.try_acquire(later + Duration::from_secs(1)),
            "a failed trial reopens it"
        );
        let much_later = later + Duration::from_secs(6);
        assert!(breaker.try_acquire(much_later));
        breaker.success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.try_acquire(much_later) && breaker.try_acquire(much_later));
    }
}
