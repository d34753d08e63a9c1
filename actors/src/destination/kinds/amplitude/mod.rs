//! `amplitude`: events sent to Amplitude's HTTP V2 API
//! (<https://amplitude.com/docs/apis/analytics/http-v2>; settings and limits in
//! `config/src/destination/native/amplitude.rs`).
//!
//! | Segment | Amplitude |
//! |---|---|
//! | `identify` | `event_type: "$identify"`, `user_properties: {"$set": traits}` |
//! | `track` | `event_type: event`, `event_properties: properties` (unchanged) |
//! | `track` `properties.revenue` / `price` / `quantity` / `productId` / `revenueType` | `revenue` / `price` / `quantity` / `productId` / `revenueType` (numbers, or strings holding one; `productId` and `revenueType` only beside `revenue` or `price`, as Amplitude requires) |
//! | `page` | `event_type: "Viewed <name> Page"` (`"Loaded a Page"` without a name), `event_properties: properties` |
//! | `screen` | `event_type: "Viewed <name> Screen"` (`"Loaded a Screen"`), `event_properties: properties` |
//! | `group` | `$identify` with `groups: {<group_type>: groupId}` and `user_properties: {"$set": {<group_type>: groupId}}` (Amplitude's setGroup); with traits, a second event `$groupidentify` with `group_properties: {"$set": traits}` |
//! | `alias` | `$identify` with `user_id: userId`, `device_id: previousId`: an event carrying both is how Amplitude merges them (an alias between two user ids needs Amplitude's paid User Mapping API, which this kind does not call) |
//! | `messageId` | `insert_id` (a group's second event: `<messageId>:group`): Amplitude drops a repeat within 7 days, so a retry never counts twice |
//! | `timestamp` | `time`, milliseconds since the epoch |
//! | `userId` | `user_id` |
//! | `anonymousId`, else `context.device.id` | `device_id` |
//! | `context.library.name`/`version` | `library` (`name/version`) |
//! | `context.ip` | `ip` |
//! | `context.os.name` / `version` | `os_name` / `os_version` |
//! | `context.device.type` / `manufacturer` / `model` | `platform` / `device_manufacturer` / `device_model` |
//! | `context.device.advertisingId` | `idfa` (iOS) or `adid` (Android) |
//! | `context.network.carrier`, `context.app.version`, `context.locale` | `carrier`, `app_version`, `language` |
//! | `context.location.country` / `region` / `city` / `latitude` / `longitude` | `country` / `region` / `city` / `location_lat` / `location_lng` |
//! | `integrations.Amplitude.session_id` | `session_id` |
//!
//! An event with neither a user nor a device id is dead-lettered without a request
//! (Amplitude requires one). Answers, per Amplitude's documentation:
//! - 200: delivered.
//! - 400 naming events (`events_with_invalid_fields`, `events_with_missing_fields`,
//!   `events_with_invalid_id_lengths`, `silenced_events`): those are dead-lettered with
//!   Amplitude's reason, the rest are sent again without them (Amplitude ingested none).
//!   A 400 naming none is the request's fault and dead-letters it; `Invalid API key`
//!   (and 401/403) hold the events, retried, until the key is fixed.
//! - 413: sent again in requests of half as many events (never expected: requests stay
//!   under Amplitude's limits; an event alone over them is dead-lettered).
//! - 429: the events of throttled users and devices (`throttled_events`) wait 30 s
//!   (or `Retry-After`) while the request's other events go again at once; events of a
//!   user or device over its daily quota are dead-lettered with that reason.
//! - 5xx, 408, a timeout: retried with backoff.

mod answer;
mod map;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use awc::http::Method;
use awc::http::header::{self, HeaderValue};
use futures::future::LocalBoxFuture;
use switchyard_schemas::Event;

use self::answer::Outcome;
use crate::destination::config::{AMPLITUDE_MAX_REQUEST_BYTES, AmplitudeConfig, DestinationTls, EgressPolicy};
use crate::destination::delivery::{Answer, Batching, Delivery, DeliveryError, Kind};
use crate::destination::kinds::http::HttpTarget;

/// What mapping can add to an event beyond the size the queue measured it at (the
/// context fields lifted to the top with Amplitude's longer names, a group's second
/// event): kept out of the byte budget so a full batch stays under 1 MB.
const MAPPED_BYTES_PER_EVENT: usize = 512;
/// `{"api_key":…,"events":[` and `],"options":{…}}`, with room for any key.
const ENVELOPE_BYTES: usize = 1_024;

/// `Debug` shows where it sends, never the API key.
#[derive(Clone)]
pub struct AmplitudeClient {
    config: Arc<AmplitudeConfig>,
    url: String,
    target: HttpTarget,
    /// Lowered after a 413 (never expected within Amplitude's documented limits).
    max_events: Arc<AtomicUsize>,
}

impl std::fmt::Debug for AmplitudeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmplitudeClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A request's body, which batch event each of its Amplitude events came from, and
/// the batch's events not in it (with why).
struct Encoded {
    body: Vec<u8>,
    origin: Vec<usize>,
    unsent: Vec<(usize, DeliveryError)>,
}

impl AmplitudeClient {
    pub fn new(config: &AmplitudeConfig, egress: Arc<EgressPolicy>) -> Result<Self, String> {
        let url = config.upload_url();
        let timeout = Duration::from_millis(config.timeout_ms);
        let target = HttpTarget::new(&url, timeout, &DestinationTls::default(), egress)?;
        Ok(AmplitudeClient {
            config: Arc::new(config.clone()),
            url,
            target,
            max_events: Arc::new(AtomicUsize::new(config.batch_max_events.max(1))),
        })
    }

    fn encode(&self, events: &[Arc<Event>]) -> Encoded {
        let mut body = Vec::with_capacity(ENVELOPE_BYTES + events.len() * 512);
        body.extend_from_slice(b"{\"api_key\":");
        // A string always encodes.
        let _ = serde_json::to_writer(&mut body, &self.config.api_key);
        body.extend_from_slice(b",\"events\":[");
        let tail = match self.config.min_id_length {
            Some(length) => format!("],\"options\":{{\"min_id_length\":{length}}}}}"),
            None => "]}".to_string(),
        };
        let limit = AMPLITUDE_MAX_REQUEST_BYTES - tail.len();
        let mut origin = Vec::with_capacity(events.len());
        let mut unsent = Vec::new();
        let mut piece = Vec::with_capacity(1024);
        let mut full = false;
        for (index, event) in events.iter().enumerate() {
            if full {
                unsent.push((index, carried()));
                continue;
            }
            let mapped = map::amplitude_events(event, &self.config.group_type);
            if mapped.iter().all(|e| e.user_id.is_none() && e.device_id.is_none()) {
                unsent.push((
                    index,
                    DeliveryError::permanent(
                        "Amplitude requires a user_id or device_id: the event has no userId, anonymousId or context.device.id".into(),
                    ),
                ));
                continue;
            }
            piece.clear();
            let mut count = 0;
            for amplitude_event in &mapped {
                if !(origin.is_empty() && count == 0) {
                    piece.push(b',');
                }
                if let Err(error) = serde_json::to_writer(&mut piece, amplitude_event) {
                    unsent.push((
                        index,
                        DeliveryError::permanent(format!("event could not be encoded: {error}")),
                    ));
                    count = 0;
                    break;
                }
                count += 1;
            }
            if count == 0 {
                continue;
            }
            if body.len() + piece.len() > limit {
                if origin.is_empty() {
                    unsent.push((
                        index,
                        DeliveryError::permanent(format!(
                            "event is {} bytes as Amplitude JSON, over Amplitude's {AMPLITUDE_MAX_REQUEST_BYTES}-byte request limit",
                            piece.len()
                        )),
                    ));
                    continue;
                }
                full = true;
                unsent.push((index, carried()));
                continue;
            }
            body.extend_from_slice(&piece);
            origin.extend(std::iter::repeat_n(index, count));
        }
        body.extend_from_slice(tail.as_bytes());
        Encoded { body, origin, unsent }
    }

    async fn post(self, encoded: Encoded, events: Vec<Arc<Event>>) -> Answer {
        let Encoded { body, origin, unsent } = encoded;
        let result = async {
            let request = self
                .target
                .request(Method::POST, &self.url)
                .await?
                .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")))
                .insert_header((header::ACCEPT, HeaderValue::from_static("*/*")))
                .insert_header((header::USER_AGENT, concat!("switchyard/", env!("CARGO_PKG_VERSION"))));
            self.target.send(request, body).await
        }
        .await;
        let outcome = match result {
            Ok(answer) => answer::classify(&answer, &origin, &events),
            Err(error) => Outcome::All(error),
        };
        match outcome {
            Outcome::Delivered if unsent.is_empty() => Answer::Delivered,
            Outcome::Delivered => Answer::Partial(unsent),
            // Retried as a whole (and counted by the breaker); an unsendable one is
            // refused again, with its own reason, once the rest is in.
            Outcome::All(error) if error.retryable => Answer::Failed(error),
            Outcome::All(error) if unsent.is_empty() => Answer::Failed(error),
            Outcome::All(error) => {
                let sent = origin.iter().map(|at| (*at, error.clone()));
                Answer::Partial(merge(sent.collect(), unsent))
            }
            Outcome::Each(failures) => Answer::Partial(merge(failures, unsent)),
            Outcome::TooLarge(fewer) => {
                self.max_events.fetch_min(fewer.max(1), Ordering::Relaxed);
                tracing::warn!(url = %self.url, max_events = fewer, "amplitude answered 413, sending smaller requests");
                let again = DeliveryError::retryable(format!(
                    "HTTP 413: over Amplitude's request limit; sent again in requests of at most {fewer} events"
                ));
                let sent = origin.iter().map(|at| (*at, again.clone()));
                Answer::Partial(merge(sent.collect(), unsent))
            }
        }
    }
}

fn carried() -> DeliveryError {
    DeliveryError::retryable(
        "did not fit under Amplitude's 1 MB with the events before it: sent in the next request".into(),
    )
}

/// Every failure once per event (a refusal over a retry, as it cannot arrive whole).
fn merge(
    mut failures: Vec<(usize, DeliveryError)>,
    unsent: Vec<(usize, DeliveryError)>,
) -> Vec<(usize, DeliveryError)> {
    failures.extend(unsent);
    failures.sort_by_key(|(index, error)| (*index, error.retryable));
    failures.dedup_by_key(|(index, _)| *index);
    failures
}

impl Kind for AmplitudeClient {
    type Settings = AmplitudeConfig;

    fn connect(settings: &AmplitudeConfig, egress: &Arc<EgressPolicy>) -> Result<Self, String> {
        AmplitudeClient::new(settings, egress.clone())
    }
}

impl Delivery for AmplitudeClient {
    fn batching(&self) -> Batching {
        let max_events = self.max_events.load(Ordering::Relaxed).max(1);
        Batching {
            max_events,
            max_bytes: Some(
                AMPLITUDE_MAX_REQUEST_BYTES
                    .saturating_sub(ENVELOPE_BYTES + max_events * MAPPED_BYTES_PER_EVENT)
                    .max(AMPLITUDE_MAX_REQUEST_BYTES / 4),
            ),
            linger: Duration::from_millis(self.config.linger_ms),
        }
    }

    fn deliver(&self, _: Arc<str>, events: Vec<Arc<Event>>) -> LocalBoxFuture<'static, Answer> {
        let encoded = self.encode(&events);
        if encoded.origin.is_empty() {
            return Box::pin(futures::future::ready(Answer::Partial(encoded.unsent)));
        }
        Box::pin(self.clone().post(encoded, events))
    }
}
