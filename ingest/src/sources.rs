//! Which write key belongs to which source, and how fast each source may send.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchyard_schemas::config::SourceConfig;

/// A source as ingest sees it: its id and, for comparison, a digest of its write key.
pub struct Source {
    pub id: Arc<str>,
    key_digest: [u8; 32],
    limiter: Option<DefaultDirectRateLimiter>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("id", &self.id).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Try again after this long.
    Limited(Duration),
}

impl Source {
    /// Takes `events` from the source's budget, all or none.
    pub fn admit(&self, events: usize) -> RateDecision {
        let Some(limiter) = &self.limiter else {
            return RateDecision::Allowed;
        };
        let Some(count) = u32::try_from(events).ok().and_then(NonZeroU32::new) else {
            return RateDecision::Allowed;
        };
        match limiter.check_n(count) {
            Ok(Ok(())) => RateDecision::Allowed,
            Ok(Err(not_until)) => RateDecision::Limited(not_until.wait_time_from(DefaultClock::default().now())),
            // More events than the burst can ever hold: validation keeps the burst at
            // least one full batch, so this only happens with a custom limit.
            Err(_) => RateDecision::Limited(Duration::from_secs(1)),
        }
    }
}

/// All sources, looked up by write key.
#[derive(Debug, Default)]
pub struct SourceRegistry {
    sources: Vec<Source>,
}

impl SourceRegistry {
    /// Builds the registry from validated source configs.
    pub fn new(configs: &[SourceConfig], max_batch_events: usize) -> Self {
        let sources = configs
            .iter()
            .map(|config| Source {
                id: Arc::from(config.id.as_str()),
                key_digest: digest(&config.write_key),
                limiter: config.rate_limit_events_per_sec.and_then(NonZeroU32::new).map(|rate| {
                    let floor = u32::try_from(max_batch_events).unwrap_or(u32::MAX);
                    let burst = config.rate_limit_burst_events.unwrap_or(rate.get().max(floor));
                    let burst = NonZeroU32::new(burst).unwrap_or(rate);
                    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
                }),
            })
            .collect();
        SourceRegistry { sources }
    }

    /// The source this write key belongs to. Every key is compared, each in constant
    /// time, so the answer's timing says nothing about how close a guess was.
    pub fn authenticate(&self, write_key: &str) -> Option<&Source> {
        let presented = digest(write_key);
        let mut found = None;
        for source in &self.sources {
            if bool::from(source.key_digest.ct_eq(&presented)) {
                found = Some(source);
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

fn digest(write_key: &str) -> [u8; 32] {
    Sha256::digest(write_key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str, key: &str, rate: Option<u32>) -> SourceConfig {
        SourceConfig {
            id: id.into(),
            name: String::new(),
            write_key: key.into(),
            rate_limit_events_per_sec: rate,
            rate_limit_burst_events: None,
        }
    }

    #[test]
    fn finds_the_source_of_a_key_and_nothing_for_a_wrong_one() {
        let registry = SourceRegistry::new(
            &[
                config("web", "key-web-0123456789", None),
                config("ios", "key-ios-0123456789", None),
            ],
            2500,
        );
        assert_eq!(registry.authenticate("key-ios-0123456789").map(|s| &*s.id), Some("ios"));
        assert!(registry.authenticate("key-ios-012345678").is_none());
        assert!(registry.authenticate("").is_none());
    }

    #[test]
    fn rate_limit_admits_a_full_batch_then_refuses_with_a_wait() {
        let registry = SourceRegistry::new(&[config("web", "key-web-0123456789", Some(10))], 100);
        let source = registry.authenticate("key-web-0123456789").expect("known");
        assert_eq!(source.admit(100), RateDecision::Allowed);
        match source.admit(5) {
            RateDecision::Limited(wait) => {
                assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1))
            }
            RateDecision::Allowed => panic!("the burst was spent; 5 more must wait"),
        }
    }

    #[test]
    fn sources_without_a_limit_are_never_limited() {
        let registry = SourceRegistry::new(&[config("web", "key-web-0123456789", None)], 2500);
        let source = registry.authenticate("key-web-0123456789").expect("known");
        for _ in 0..100 {
            assert_eq!(source.admit(2500), RateDecision::Allowed);
        }
    }
}
