//! What every destination kind implements: how it batches, how it sends a batch, and
//! what the answer means for each event. The destination actor knows nothing of any
//! kind beyond this; a new kind is a folder under `kinds/` and one line in
//! [`super::kinds::connect`].

use std::sync::Arc;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use switchyard_schemas::Event;

use super::config::{EgressError, EgressPolicy};

/// Why a request (or one event of it) failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    pub retryable: bool,
    pub reason: String,
    /// The destination asked for this wait (`Retry-After`, a throttle).
    pub retry_after: Option<Duration>,
}

impl DeliveryError {
    pub fn retryable(reason: String) -> Self {
        DeliveryError {
            retryable: true,
            reason,
            retry_after: None,
        }
    }
    pub fn permanent(reason: String) -> Self {
        DeliveryError {
            retryable: false,
            reason,
            retry_after: None,
        }
    }
    /// An address the egress policy refused (for good) or a lookup that failed (retried).
    pub fn egress(reason: String, error: &EgressError) -> Self {
        DeliveryError {
            retryable: error.is_retriable(),
            reason,
            retry_after: None,
        }
    }
}

/// The answer to one batch, as the destination actor acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Every event arrived.
    Delivered,
    /// None arrived: retried (after the error's `retry_after` at least) or
    /// dead-lettered with its reason, by whether it is retryable.
    Failed(DeliveryError),
    /// Some arrived: these (index in the batch, why) did not; every other one did.
    /// The destination answered, so a partial answer never opens the breaker.
    Partial(Vec<(usize, DeliveryError)>),
}

impl From<Result<(), DeliveryError>> for Answer {
    fn from(result: Result<(), DeliveryError>) -> Self {
        match result {
            Ok(()) => Answer::Delivered,
            Err(error) => Answer::Failed(error),
        }
    }
}

/// How a kind groups events into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// At most this many events per request (at least one).
    pub max_events: usize,
    /// At most this many bytes of encoded events per request, when the kind has a limit
    /// (an event larger than it goes alone, and the destination refuses it with its reason).
    pub max_bytes: Option<usize>,
    /// How long a partial batch of first attempts may wait for more (zero: send at once).
    pub linger: Duration,
}

impl Batching {
    /// `max_events` per request, sent at once.
    pub fn events(max_events: usize) -> Batching {
        Batching {
            max_events: max_events.max(1),
            max_bytes: None,
            linger: Duration::ZERO,
        }
    }
}

/// A connected destination client, used only on its actor's thread.
pub trait Delivery {
    fn batching(&self) -> Batching;

    /// Sends one batch (its events in the order they came) and classifies the answer.
    /// Never panics on an event or an answer: every failure is an [`Answer`].
    fn deliver(&self, source_id: Arc<str>, events: Vec<Arc<Event>>) -> LocalBoxFuture<'static, Answer>;
}

/// A destination kind: its settings (the `kind`'s table in the configuration) and how
/// a client is made from them.
pub trait Kind: Delivery + Sized + 'static {
    type Settings;

    /// Builds the client, on the actor's own thread (some clients are thread-local).
    /// Every client checks where it connects against `egress` when it connects. An error
    /// here restarts the client with backoff, the events kept.
    fn connect(settings: &Self::Settings, egress: &Arc<EgressPolicy>) -> Result<Self, String>;
}

/// A kind's client behind the trait.
pub fn boxed<K: Kind>(settings: &K::Settings, egress: &Arc<EgressPolicy>) -> Result<Box<dyn Delivery>, String> {
    Ok(Box::new(K::connect(settings, egress)?))
}
