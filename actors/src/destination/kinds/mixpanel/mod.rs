//! `mixpanel`: events sent to Mixpanel's Ingestion API (settings and limits in
//! `config/src/destination/native/mixpanel.rs`): events to `/import?strict=1`, user
//! profile updates to `/engage`, group profile updates to `/groups`, one request to
//! each endpoint a batch needs, at once.
//!
//! | Segment | Mixpanel |
//! |---|---|
//! | `track` | `/import` event `event`, `properties` with the mapped fields below added (they win over a property of the same name) |
//! | `page` | `/import` event `Viewed <name> Page` (`Loaded a Page` without a name), its properties with `name` and `category` |
//! | `screen` | `/import` event `Viewed <name> Screen` (`Loaded a Screen`), its properties with `name` |
//! | `identify` | `/engage` `$set` of the traits on the user's profile (`email`, `firstName`, `lastName`, `name`, `phone`, `avatar`, `createdAt` as `$email`, `$first_name`, `$last_name`, `$name`, `$phone`, `$avatar`, `$created`); with a userId, also an `/import` `$identify` event (`$identified_id`, `$anon_id`) merging the anonymous id into the user |
//! | `group` | `/engage` `$union` of `{<group_key>: [groupId]}` on the user's profile, and `/groups` `$set` of the traits on the group's profile (`$group_key`, `$group_id`) |
//! | `alias` | `/import` `$create_alias` event: `distinct_id` previousId, `alias` userId |
//! | `messageId` | `$insert_id` (itself when it is at most 36 letters, digits or `-`, else the first 36 hex digits of its SHA-256): Mixpanel drops a repeat, so a retry never counts twice |
//! | `timestamp` (else `receivedAt`, else now: Mixpanel requires one) | `time`, milliseconds since the epoch |
//! | `userId`, else `anonymousId` | `distinct_id` (profiles: `$distinct_id`) |
//! | `userId` / `anonymousId` | `$user_id` / `$device_id` (Simplified ID Merge) |
//! | `context.ip` | `ip` (profiles: `$ip`), which Mixpanel geolocates |
//! | `context.os.name` / `version` | `$os` / `$os_version` |
//! | `context.device.manufacturer` / `model` | `$manufacturer` / `$model` |
//! | `context.app.version`, `context.network.carrier` | `$app_version_string`, `$carrier` |
//! | `context.page.url` / `referrer` | `$current_url` / `$referrer` |
//! | `context.screen.height` / `width` | `$screen_height` / `$screen_width` |
//! | `context.location.city` / `region` | `$city` / `$region` |
//! | `context.library.name` / `version` | `mp_lib` / `$lib_version` |
//! | `context.campaign.source` / `medium` / `name` / `term` / `content` | `utm_source` / `utm_medium` / `utm_campaign` / `utm_term` / `utm_content` |
//!
//! Authentication: `/import` with the service account (and `project_id`) when one is
//! set, else the project token as Basic auth's user name; the profile endpoints with
//! the token in each update, as Mixpanel asks. Bodies are gzip-compressed unless
//! `gzip = false`.
//!
//! Answers: 200 delivers. A 400 from `/import` lists `failed_records`: exactly those are
//! dead-lettered with Mixpanel's field and message, and nothing else is sent again
//! (Mixpanel imported the rest). A profile request answered `"status": 0` refuses its
//! updates (dead-lettered with the error). 401 and 403 hold the events, retried, until
//! the credentials are fixed; 413 sends them again in requests of half as many; 429,
//! 5xx and transport failures are retried (after `Retry-After`). An event that is part
//! of several requests arrives only when all of them did, and is retried whole
//! (`$insert_id` and `$set` make the repeat harmless).

mod answer;
mod map;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use awc::http::Method;
use awc::http::header::{self, HeaderValue};
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::future::LocalBoxFuture;
use serde_json::Value;
use switchyard_schemas::Event;

use self::answer::Outcome;
pub use self::map::insert_id;
use crate::destination::config::{
    DestinationTls, EgressPolicy, MIXPANEL_MAX_EVENT_BYTES, MIXPANEL_MAX_REQUEST_BYTES, MixpanelConfig,
};
use crate::destination::delivery::{Answer, Batching, Delivery, DeliveryError, Kind};
use crate::destination::kinds::http::HttpTarget;

/// What mapping can add to an event beyond the size the queue measured it at.
const MAPPED_BYTES_PER_EVENT: usize = 1_024;

/// `Debug` shows where it sends, never the token or the secret.
#[derive(Clone)]
pub struct MixpanelClient {
    config: Arc<MixpanelConfig>,
    target: HttpTarget,
    import_url: String,
    max_events: Arc<AtomicUsize>,
}

impl std::fmt::Debug for MixpanelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixpanelClient")
            .field("import_url", &self.import_url)
            .finish_non_exhaustive()
    }
}

/// One endpoint's part of a batch: its body's items and which batch event each came from.
#[derive(Default)]
struct Part {
    items: Vec<Value>,
    origin: Vec<usize>,
}

/// The three requests a batch needs, and the events that go in none (with why).
#[derive(Default)]
struct Parts {
    import: Part,
    engage: Part,
    groups: Part,
    unsent: Vec<(usize, DeliveryError)>,
}

impl MixpanelClient {
    pub fn new(config: &MixpanelConfig, egress: Arc<EgressPolicy>) -> Result<Self, String> {
        let mut import_url = config.url("import?strict=1");
        if config.service_account_username.is_some()
            && let Some(project) = &config.project_id
        {
            import_url.push_str(&format!("&project_id={project}"));
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let target = HttpTarget::new(&import_url, timeout, &DestinationTls::default(), egress)?;
        Ok(MixpanelClient {
            config: Arc::new(config.clone()),
            target,
            import_url,
            max_events: Arc::new(AtomicUsize::new(config.batch_max_events.max(1))),
        })
    }

    fn split(&self, events: &[Arc<Event>]) -> Parts {
        let mut parts = Parts::default();
        let mut import_bytes = 2;
        for (index, event) in events.iter().enumerate() {
            let mapped = map::mixpanel(event, &self.config);
            if let Some(item) = mapped.event {
                let size = serde_json::to_vec(&item).map_or(usize::MAX, |bytes| bytes.len());
                if size > MIXPANEL_MAX_EVENT_BYTES {
                    parts.unsent.push((
                        index,
                        DeliveryError::permanent(format!(
                            "event is {size} bytes as Mixpanel JSON, over Mixpanel's {MIXPANEL_MAX_EVENT_BYTES}-byte limit per event"
                        )),
                    ));
                    continue;
                }
                if import_bytes + size + 1 > MIXPANEL_MAX_REQUEST_BYTES {
                    parts.unsent.push((
                        index,
                        DeliveryError::retryable(
                            "did not fit under Mixpanel's 10 MB with the events before it: sent in the next request"
                                .into(),
                        ),
                    ));
                    continue;
                }
                import_bytes += size + 1;
                parts.import.items.push(item);
                parts.import.origin.push(index);
            }
            for update in mapped.engage {
                parts.engage.items.push(update);
                parts.engage.origin.push(index);
            }
            for update in mapped.groups {
                parts.groups.items.push(update);
                parts.groups.origin.push(index);
            }
        }
        parts
    }

    fn body(&self, items: &[Value]) -> Result<Vec<u8>, DeliveryError> {
        let json = serde_json::to_vec(items).map_err(|e| DeliveryError::permanent(format!("could not encode: {e}")))?;
        if !self.config.gzip {
            return Ok(json);
        }
        let mut gzip = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
        gzip.write_all(&json)
            .and_then(|()| gzip.finish())
            .map_err(|e| DeliveryError::retryable(format!("gzip failed: {e}")))
    }

    async fn send(&self, url: &str, items: &[Value], import: bool) -> Outcome {
        let body = match self.body(items) {
            Ok(body) => body,
            Err(error) => return Outcome::All(error),
        };
        let request = match self.target.request(Method::POST, url).await {
            Ok(request) => request,
            Err(error) => return Outcome::All(error),
        };
        let mut request = request
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")))
            .insert_header((header::ACCEPT, HeaderValue::from_static("application/json")))
            .insert_header((header::USER_AGENT, concat!("switchyard/", env!("CARGO_PKG_VERSION"))));
        if self.config.gzip {
            request = request.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
        }
        if import {
            request = match (
                &self.config.service_account_username,
                &self.config.service_account_secret,
            ) {
                (Some(user), Some(secret)) => request.basic_auth(user, secret),
                _ => request.basic_auth(&self.config.project_token, ""),
            };
        }
        let endpoint = if import {
            "import"
        } else {
            url.rsplit('/').next().unwrap_or_default()
        };
        match self.target.send(request, body).await {
            Ok(answer) if import => answer::import(&answer, items.len()),
            Ok(answer) => answer::profiles(&answer, items.len(), endpoint.split('?').next().unwrap_or_default()),
            Err(error) => Outcome::All(error),
        }
    }

    async fn part(&self, url: String, part: &Part, import: bool, failures: &mut Vec<(usize, DeliveryError)>) {
        if part.items.is_empty() {
            return;
        }
        let mut fail_all = |error: DeliveryError| {
            failures.extend(part.origin.iter().map(|at| (*at, error.clone())));
        };
        match self.send(&url, &part.items, import).await {
            Outcome::Delivered => {}
            Outcome::All(error) => fail_all(error),
            Outcome::Refused(refused) => failures.extend(
                refused
                    .into_iter()
                    .filter_map(|(item, error)| part.origin.get(item).map(|at| (*at, error))),
            ),
            Outcome::TooLarge => {
                let mut distinct = part.origin.clone();
                distinct.dedup();
                let fewer = (distinct.len() / 2).max(1);
                self.max_events.fetch_min(fewer, Ordering::Relaxed);
                tracing::warn!(url = %url, max_events = fewer, "mixpanel answered 413, sending smaller requests");
                fail_all(DeliveryError::retryable(format!(
                    "HTTP 413: over Mixpanel's request limit; sent again in requests of at most {fewer} events"
                )));
            }
        }
    }

    async fn post(self, parts: Parts, count: usize) -> Answer {
        let mut import_failures = Vec::new();
        let mut engage_failures = Vec::new();
        let mut groups_failures = Vec::new();
        futures::join!(
            self.part(self.import_url.clone(), &parts.import, true, &mut import_failures),
            self.part(
                self.config.url("engage?verbose=1"),
                &parts.engage,
                false,
                &mut engage_failures
            ),
            self.part(
                self.config.url("groups?verbose=1"),
                &parts.groups,
                false,
                &mut groups_failures
            ),
        );
        let mut failures = parts.unsent;
        failures.extend(import_failures);
        failures.extend(engage_failures);
        failures.extend(groups_failures);
        // A refusal over a retry: the event cannot arrive whole.
        failures.sort_by_key(|(index, error)| (*index, error.retryable));
        failures.dedup_by_key(|(index, _)| *index);
        if failures.is_empty() {
            return Answer::Delivered;
        }
        // Nothing arrived and it may next time: a failure of the destination, for the breaker.
        if failures.len() == count && failures.iter().all(|(_, error)| error.retryable) {
            let mut error = failures[0].1.clone();
            error.retry_after = failures.iter().filter_map(|(_, e)| e.retry_after).max();
            return Answer::Failed(error);
        }
        Answer::Partial(failures)
    }
}

impl Kind for MixpanelClient {
    type Settings = MixpanelConfig;

    fn connect(settings: &MixpanelConfig, egress: &Arc<EgressPolicy>) -> Result<Self, String> {
        MixpanelClient::new(settings, egress.clone())
    }
}

impl Delivery for MixpanelClient {
    fn batching(&self) -> Batching {
        let max_events = self.max_events.load(Ordering::Relaxed).max(1);
        Batching {
            max_events,
            max_bytes: Some(
                MIXPANEL_MAX_REQUEST_BYTES
                    .saturating_sub(max_events * MAPPED_BYTES_PER_EVENT)
                    .max(MIXPANEL_MAX_REQUEST_BYTES / 4),
            ),
            linger: Duration::from_millis(self.config.linger_ms),
        }
    }

    fn deliver(&self, _: Arc<str>, events: Vec<Arc<Event>>) -> LocalBoxFuture<'static, Answer> {
        let parts = self.split(&events);
        let count = events.len();
        Box::pin(self.clone().post(parts, count))
    }
}
