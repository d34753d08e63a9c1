//! Which write key belongs to which source, and how fast each source may send.

use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use switchyard_config::{SourceConfig, WebhookSourceConfig};

use crate::webhooks::source::Webhook;

/// A source as ingest sees it: its id and, for comparison, the digests of its write
/// keys (more than one while a rotated key is still allowed).
pub struct Source {
    pub id: Arc<str>,
    key_digests: Vec<[u8; 32]>,
    /// The limits it was built with, so a reload keeps the limiter of an unchanged source.
    limits: (Option<u32>, Option<u32>),
    limiter: Option<DefaultDirectRateLimiter>,
    /// Events accepted (written to Kafka) since this source was configured.
    pub accepted: AtomicU64,
    /// A webhook source's settings (None for write-key sources); an error when they
    /// don't compile, which configuration checks catch before this is built.
    webhook: Option<Result<Arc<Webhook>, String>>,
    webhook_config: Option<WebhookSourceConfig>,
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

/// What ingest needs of a source: from the configuration file (one write key) or
/// from the control plane (write keys kept only as SHA-256 digests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub id: String,
    pub key_digests: Vec<[u8; 32]>,
    pub rate_limit_events_per_sec: Option<u32>,
    pub rate_limit_burst_events: Option<u32>,
    /// A webhook source (no write keys); see `webhooks`.
    pub webhook: Option<WebhookSourceConfig>,
}

impl From<&SourceConfig> for SourceSpec {
    fn from(config: &SourceConfig) -> Self {
        let key_digests = if config.write_key.is_empty() {
            Vec::new()
        } else {
            vec![digest(&config.write_key)]
        };
        SourceSpec {
            id: config.id.clone(),
            key_digests,
            rate_limit_events_per_sec: config.rate_limit_events_per_sec,
            rate_limit_burst_events: config.rate_limit_burst_events,
            webhook: config.webhook.clone(),
        }
    }
}

/// The sources ingest accepts, by write key. [`SourceRegistry::reload`] swaps the set
/// while requests are served; a request keeps the source it authenticated as.
#[derive(Debug, Default)]
pub struct SourceRegistry {
    max_batch_events: usize,
    sources: RwLock<Arc<[Arc<Source>]>>,
}

impl SourceRegistry {
    pub fn new(configs: &[SourceConfig], max_batch_events: usize) -> Self {
        let registry = SourceRegistry {
            max_batch_events,
            sources: RwLock::new(Arc::from(Vec::new())),
        };
        registry.reload(configs);
        registry
    }

    /// Replaces the sources with those of a configuration file.
    pub fn reload(&self, configs: &[SourceConfig]) {
        self.reload_specs(&configs.iter().map(SourceSpec::from).collect::<Vec<_>>());
    }

    /// Replaces the sources. An unchanged source (same id, keys and limits) keeps its
    /// rate limiter, so a reload doesn't hand out a fresh burst.
    pub fn reload_specs(&self, specs: &[SourceSpec]) {
        let current = self.snapshot();
        let sources: Vec<Arc<Source>> = specs
            .iter()
            .map(|spec| {
                let limits = (spec.rate_limit_events_per_sec, spec.rate_limit_burst_events);
                let same = current.iter().find(|s| {
                    *s.id == *spec.id
                        && s.key_digests == spec.key_digests
                        && s.limits == limits
                        && s.webhook_config == spec.webhook
                });
                match same {
                    Some(source) => source.clone(),
                    None => Arc::new(self.build(spec, limits)),
                }
            })
            .collect();
        *self.sources.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::from(sources);
    }

    fn build(&self, spec: &SourceSpec, limits: (Option<u32>, Option<u32>)) -> Source {
        let limiter = spec.rate_limit_events_per_sec.and_then(NonZeroU32::new).map(|rate| {
            let floor = u32::try_from(self.max_batch_events).unwrap_or(u32::MAX);
            let burst = spec.rate_limit_burst_events.unwrap_or(rate.get().max(floor));
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
        });
        let webhook = spec.webhook.as_ref().map(|config| {
            Webhook::new(config).map(Arc::new).inspect_err(|error| {
                tracing::error!(source_id = %spec.id, %error, "webhook source settings refused; its deliveries are answered 404");
            })
        });
        Source {
            id: Arc::from(spec.id.as_str()),
            key_digests: spec.key_digests.clone(),
            limits,
            limiter,
            accepted: AtomicU64::new(0),
            webhook,
            webhook_config: spec.webhook.clone(),
        }
    }

    /// The webhook source of this id, with its settings.
    pub fn webhook_source(&self, id: &str) -> Option<(Arc<Source>, Arc<Webhook>)> {
        let source = self.snapshot().iter().find(|s| *s.id == *id)?.clone();
        let webhook = source.webhook.clone()?.ok()?;
        Some((source, webhook))
    }

    /// The sources as configured now.
    pub fn snapshot(&self) -> Arc<[Arc<Source>]> {
        self.sources
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn authenticate(&self, write_key: &str) -> Option<Arc<Source>> {
        let presented = digest(write_key);
        let mut found = None;
        // Every key is compared, so the time taken says nothing about which matched.
        for source in self.snapshot().iter() {
            for key_digest in &source.key_digests {
                if bool::from(key_digest.ct_eq(&presented)) {
                    found = Some(source.clone());
                }
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
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
            kind: Default::default(),
            webhook: None,
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
        assert_eq!(
            registry.authenticate("key-ios-0123456789").map(|s| s.id.to_string()),
            Some("ios".into())
        );
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

    #[test]
    fn reload_swaps_keys_and_keeps_the_limiter_of_an_unchanged_source() {
        let registry = SourceRegistry::new(&[config("web", "key-web-0123456789", Some(10))], 10);
        let before = registry.authenticate("key-web-0123456789").expect("known");
        assert_eq!(before.admit(10), RateDecision::Allowed);
        registry.reload(&[
            config("web", "key-web-0123456789", Some(10)),
            config("ios", "key-ios-0123456789", None),
        ]);
        let after = registry.authenticate("key-web-0123456789").expect("still known");
        assert!(
            matches!(after.admit(10), RateDecision::Limited(_)),
            "the spent burst carries over a reload"
        );
        assert!(
            registry.authenticate("key-ios-0123456789").is_some(),
            "added source accepted"
        );
        registry.reload(&[config("ios", "key-ios-rotated-0123", None)]);
        assert!(
            registry.authenticate("key-web-0123456789").is_none(),
            "removed source refused"
        );
        assert!(registry.authenticate("key-ios-0123456789").is_none(), "old key refused");
        assert_eq!(registry.len(), 1);
    }
}
