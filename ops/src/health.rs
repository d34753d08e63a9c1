//! Readiness: the broker answers, and ingest's producer isn't backed up. Liveness is
//! simply that the ops server answers: a wedged process stops answering it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, Producer};
use serde::Serialize;

/// How long a broker check is reused before asking again.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long the broker has to answer a metadata request.
const BROKER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReadyReport {
    pub ready: bool,
    /// Why not, one line per failed check.
    pub problems: Vec<String>,
}

/// Checks the broker with a client of its own, caching the answer a few seconds so a
/// probe every second doesn't become a metadata request every second.
pub struct Readiness {
    client: Option<BaseProducer>,
    topic: String,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Readiness {
    pub fn new(brokers: &str, options: &std::collections::BTreeMap<String, String>, topic: &str) -> Self {
        let client = match switchyard_kafka::client(brokers, options).create::<BaseProducer>() {
            Ok(client) => Some(client),
            Err(error) => {
                tracing::error!(%error, "cannot create the readiness kafka client");
                None
            }
        };
        Readiness {
            client,
            topic: topic.to_string(),
            last: Mutex::new(None),
        }
    }

    /// Whether the ingest topic's metadata comes back from the broker. Blocking: call it
    /// off the async threads.
    pub fn broker(&self) -> Result<(), String> {
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < CHECK_EVERY
        {
            return result.clone();
        }
        let result = match &self.client {
            None => Err("no kafka client".to_string()),
            Some(client) => match client.client().fetch_metadata(Some(&self.topic), BROKER_TIMEOUT) {
                Ok(metadata) => match metadata.topics().first() {
                    Some(topic) if topic.error().is_none() => Ok(()),
                    Some(topic) => Err(format!("topic {}: {:?}", self.topic, topic.error())),
                    None => Err(format!("topic {} not found", self.topic)),
                },
                Err(error) => Err(format!("broker unreachable: {error}")),
            },
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}
