//! `segment`: events forwarded unchanged to a Segment-compatible `/v1/batch`
//! (settings and limits in `config/src/destination/native/segment.rs`).
//!
//! | Segment spec | sent as |
//! |---|---|
//! | every field of every call type (identify, track, page, screen, group, alias) | itself, unchanged: `messageId`, `timestamp`, `receivedAt`, `context`, `integrations`, `properties`/`traits` byte for byte |
//! | `sentAt` | the time of this request |
//! | `originalTimestamp` | the event's `timestamp` (already corrected for the client's clock) |
//! | the write key | HTTP Basic auth: user = write key, empty password |
//! | a batch | `{"batch": [event, ...]}`, at most `batch_max_events` events and 500 KB |
//!
//! Why those two change: a Segment-compatible API dates an event by its own clock,
//! `receivedAt - (sentAt - originalTimestamp)`. With the client's `sentAt` and
//! `originalTimestamp` passed on, an event relayed an hour late (a backlog, an outage)
//! would be dated an hour late. With `sentAt` now and `originalTimestamp` the corrected
//! time, the receiver arrives at the same `timestamp` (give or take the request's
//! own trip). The client's raw clock reading is what is given up.
//!
//! Answers: 2xx delivers the batch. An event over Segment's 32 KB is never sent (the
//! API would refuse the whole batch with a 400) and is dead-lettered with that reason.
//! 429, 408 and 5xx are retried after `Retry-After`. 401 and 403 (a write key revoked
//! or mistyped) are retried too, so the breaker opens and the events wait, parked,
//! until the key is fixed, rather than being dead-lettered by a credential mistake.
//! Any other answer (400: the API refused the JSON) dead-letters the batch with the
//! API's reason.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use awc::http::header::{self, HeaderValue};
use awc::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use futures::future::LocalBoxFuture;
use switchyard_schemas::Event;

use crate::destination::config::{
    DestinationTls, EgressPolicy, SEGMENT_MAX_BATCH_BYTES, SEGMENT_MAX_EVENT_BYTES, SegmentConfig,
};
use crate::destination::delivery::{Answer, Batching, Delivery, DeliveryError, Kind};
use crate::destination::kinds::http::HttpTarget;

/// `{"batch":[` and `]}`.
const ENVELOPE_BYTES: usize = 12;
/// The most `sentAt` and `originalTimestamp` add to an event as sent (two keys and two
/// nanosecond RFC 3339 times), beyond the size the queue measured it at, plus its comma.
const RELAY_BYTES_PER_EVENT: usize = 128;

/// `Debug` shows where it sends, never the write key.
#[derive(Clone)]
pub struct SegmentClient {
    config: Arc<SegmentConfig>,
    url: String,
    target: HttpTarget,
}

impl std::fmt::Debug for SegmentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SegmentClient {
    pub fn new(config: &SegmentConfig, egress: Arc<EgressPolicy>) -> Result<Self, String> {
        let url = config.batch_url();
        let timeout = Duration::from_millis(config.timeout_ms);
        let target = HttpTarget::new(&url, timeout, &DestinationTls::default(), egress)?;
        Ok(SegmentClient {
            config: Arc::new(config.clone()),
            url,
            target,
        })
    }

    async fn post(self, body: Vec<u8>) -> Result<(), DeliveryError> {
        let request = self
            .target
            .request(Method::POST, &self.url)
            .await?
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")))
            .insert_header((header::USER_AGENT, concat!("switchyard/", env!("CARGO_PKG_VERSION"))))
            .basic_auth(&self.config.write_key, "");
        let answer = self.target.send(request, body).await?;
        match answer.status {
            status if status.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(DeliveryError {
                retryable: true,
                reason: format!(
                    "HTTP {}: the endpoint refused the write key (held until it is fixed): {}",
                    answer.status.as_u16(),
                    answer.snippet()
                ),
                retry_after: answer.retry_after(),
            }),
            _ => Err(answer.refused()),
        }
    }
}

/// The event as this kind sends it (see the module's table).
fn relayed(event: &Event, now: DateTime<Utc>) -> Event {
    let mut relayed = event.clone();
    let common = relayed.common_mut();
    if let Some(timestamp) = common.timestamp {
        common.original_timestamp = Some(timestamp);
    }
    common.sent_at = Some(now);
    relayed
}

/// Each event's JSON, and the events too large to send with their reason.
fn encode(events: &[Arc<Event>]) -> (Vec<u8>, Vec<(usize, DeliveryError)>) {
    let now = Utc::now();
    let mut body = Vec::with_capacity(ENVELOPE_BYTES + events.len() * 1024);
    body.extend_from_slice(b"{\"batch\":[");
    let mut refused = Vec::new();
    let mut first = true;
    for (index, event) in events.iter().enumerate() {
        let start = body.len();
        if !first {
            body.push(b',');
        }
        if let Err(error) = serde_json::to_writer(&mut body, &relayed(event, now)) {
            body.truncate(start);
            refused.push((
                index,
                DeliveryError::permanent(format!("event could not be encoded: {error}")),
            ));
            continue;
        }
        let size = body.len() - start - usize::from(!first);
        if size > SEGMENT_MAX_EVENT_BYTES {
            body.truncate(start);
            refused.push((
                index,
                DeliveryError::permanent(format!(
                    "event is {size} bytes of JSON, over Segment's limit of {SEGMENT_MAX_EVENT_BYTES} per event"
                )),
            ));
            continue;
        }
        first = false;
    }
    body.extend_from_slice(b"]}");
    (body, refused)
}

impl Kind for SegmentClient {
    type Settings = SegmentConfig;

    fn connect(settings: &SegmentConfig, egress: &Arc<EgressPolicy>) -> Result<Self, String> {
        SegmentClient::new(settings, egress.clone())
    }
}

impl Delivery for SegmentClient {
    fn batching(&self) -> Batching {
        let max_events = self.config.batch_max_events.max(1);
        Batching {
            max_events,
            // The envelope and what relaying adds to each event stay inside the request's limit.
            max_bytes: Some(SEGMENT_MAX_BATCH_BYTES - ENVELOPE_BYTES - max_events * RELAY_BYTES_PER_EVENT),
            linger: Duration::from_millis(self.config.linger_ms),
        }
    }

    fn deliver(&self, _: Arc<str>, events: Vec<Arc<Event>>) -> LocalBoxFuture<'static, Answer> {
        let (body, refused) = encode(&events);
        let count = events.len();
        if refused.len() == count {
            return Box::pin(futures::future::ready(Answer::Partial(refused)));
        }
        let client = self.clone();
        Box::pin(async move {
            match (client.post(body).await, refused.is_empty()) {
                (Ok(()), true) => Answer::Delivered,
                (Ok(()), false) => Answer::Partial(refused),
                (Err(error), true) => Answer::Failed(error),
                // Retried as a whole: the refused ones get their own reason once the rest is in.
                (Err(error), false) if error.retryable => Answer::Failed(error),
                (Err(error), false) => {
                    let mut every = refused;
                    let sent: Vec<usize> = (0..count).filter(|i| !every.iter().any(|(r, _)| r == i)).collect();
                    every.extend(sent.into_iter().map(|index| (index, error.clone())));
                    every.sort_by_key(|(index, _)| *index);
                    Answer::Partial(every)
                }
            }
        })
    }
}
