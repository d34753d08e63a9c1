//! The Kafka destination: events written to another topic (on this cluster or another)
//! in the ingest record format, with the destination's own credentials.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use switchyard_schemas::{Event, RecordHeaders, record_key};

use futures::future::LocalBoxFuture;

use crate::destination::config::{EgressPolicy, KafkaDestinationConfig, broker_addresses};
use crate::destination::delivery::{Answer, Batching, Delivery, DeliveryError, Kind};

#[derive(Clone)]
pub struct KafkaClient {
    producer: FutureProducer,
    topic: Arc<str>,
    batch_max_events: usize,
    egress: Arc<EgressPolicy>,
    /// When the brokers the cluster advertises were last found allowed.
    cluster_checked: Arc<Mutex<Option<Instant>>>,
}

/// How long a check of the advertised brokers holds before the next batch checks again.
const CLUSTER_CHECK_EVERY: Duration = Duration::from_secs(60);

impl std::fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaClient")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl KafkaClient {
    /// The bootstrap brokers are resolved and checked against `egress` now. Without TLS
    /// the producer is given the checked addresses themselves, so a name can't be
    /// re-pointed between the check and librdkafka's own lookup; with TLS it keeps the
    /// names, which the certificate check binds the connection to. The brokers the
    /// cluster then advertises are checked before any record is produced (`send`).
    pub fn new(config: &KafkaDestinationConfig, egress: Arc<EgressPolicy>) -> Result<Self, String> {
        let tls = config
            .options
            .get("security.protocol")
            .is_some_and(|protocol| protocol.to_ascii_lowercase().ends_with("ssl"));
        let mut bootstrap = Vec::new();
        for (host, port) in broker_addresses(&config.brokers)? {
            let checked = egress.resolve(host, port).map_err(|e| format!("brokers: {e}"))?;
            if tls {
                bootstrap.push(format!("{host}:{port}"));
            } else {
                bootstrap.extend(checked.iter().map(ToString::to_string));
            }
        }
        let client = switchyard_kafka::durable_producer(
            &bootstrap.join(","),
            config.timeout_ms,
            &[("linger.ms", "5")],
            &config.options,
        );
        Ok(KafkaClient {
            producer: client.create().map_err(|e| format!("kafka producer: {e}"))?,
            topic: Arc::from(config.topic.as_str()),
            batch_max_events: config.batch_max_events,
            egress,
            cluster_checked: Arc::new(Mutex::new(None)),
        })
    }

    /// Refuses to produce to a cluster that advertises a broker the egress policy
    /// blocks (a tenant's cluster can name any host:port as a partition leader).
    async fn check_cluster(&self) -> Result<(), DeliveryError> {
        let fresh = |checked: &Option<Instant>| checked.is_some_and(|at| at.elapsed() < CLUSTER_CHECK_EVERY);
        if fresh(&self.cluster_checked.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(());
        }
        let (producer, topic, egress) = (self.producer.clone(), self.topic.clone(), self.egress.clone());
        let timeout = Duration::from_secs(10);
        let checked = tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|error| DeliveryError::retryable(format!("kafka metadata: {error}")))?;
            for broker in metadata.brokers() {
                let port = u16::try_from(broker.port()).unwrap_or_default();
                egress.resolve(broker.host(), port).map_err(|error| {
                    let reason = format!("kafka cluster advertises broker {}:{port}: {error}", broker.host());
                    DeliveryError::egress(reason, &error)
                })?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|error| Err(DeliveryError::retryable(format!("kafka metadata: {error}"))));
        checked?;
        *self.cluster_checked.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        Ok(())
    }

    /// Writes the batch and waits for every acknowledgement. Each record has its own
    /// answer: only those the cluster did not take are retried (or dead-lettered, when
    /// the refusal is about the record), so nothing it took is written twice.
    pub async fn send(self, source_id: Arc<str>, events: Vec<Arc<Event>>) -> Answer {
        if let Err(error) = self.check_cluster().await {
            return Answer::Failed(error);
        }
        let mut deliveries = Vec::with_capacity(events.len());
        // Once the producer refused a record (its queue full, say), the rest wait for
        // the retry with it rather than overtake it.
        let mut refused: Option<DeliveryError> = None;
        for event in &events {
            if let Some(error) = &refused {
                deliveries.push(Err(error.clone()));
                continue;
            }
            let value = match serde_json::to_vec(event.as_ref()) {
                Ok(value) => value,
                Err(error) => {
                    let error = DeliveryError::permanent(format!("event could not be encoded: {error}"));
                    deliveries.push(Err(error));
                    continue;
                }
            };
            let key = record_key(&source_id, event);
            let record_headers = RecordHeaders::new(&source_id, event, None);
            let pairs = record_headers.pairs();
            let mut headers = OwnedHeaders::new_with_capacity(pairs.len());
            for (name, value) in pairs {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            }
            let record = FutureRecord::to(&self.topic).key(&key).payload(&value).headers(headers);
            let delivery = self.producer.send_result(record).map_err(|(error, _)| classify(error));
            if let Err(error) = &delivery {
                refused = Some(error.clone());
            }
            deliveries.push(delivery);
        }
        let mut failed = Vec::new();
        for (index, delivery) in deliveries.into_iter().enumerate() {
            let answer = match delivery {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((error, _))) => Err(classify(error)),
                    Err(_) => Err(DeliveryError::retryable("the producer shut down".into())),
                },
                Err(error) => Err(error),
            };
            if let Err(error) = answer {
                failed.push((index, error));
            }
        }
        partial(failed, events.len())
    }
}

/// Every record's answer as one outcome: all taken, none taken for one reason, or
/// some of them.
fn partial(mut failed: Vec<(usize, DeliveryError)>, total: usize) -> Answer {
    if failed.is_empty() {
        return Answer::Delivered;
    }
    if failed.len() == total && failed.iter().all(|(_, error)| *error == failed[0].1) {
        return Answer::Failed(failed.swap_remove(0).1);
    }
    Answer::Partial(failed)
}

impl Kind for KafkaClient {
    type Settings = KafkaDestinationConfig;

    fn connect(settings: &KafkaDestinationConfig, egress: &Arc<EgressPolicy>) -> Result<Self, String> {
        KafkaClient::new(settings, egress.clone())
    }
}

impl Delivery for KafkaClient {
    fn batching(&self) -> Batching {
        Batching::events(self.batch_max_events)
    }

    fn deliver(&self, source_id: Arc<str>, events: Vec<Arc<Event>>) -> LocalBoxFuture<'static, Answer> {
        Box::pin(self.clone().send(source_id, events))
    }
}

/// Refusals about the record itself or our rights won't change on retry; the rest
/// (unreachable cluster, timeouts, leader changes, a full queue) will.
fn classify(error: KafkaError) -> DeliveryError {
    let permanent = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
        )
    );
    let reason = format!("kafka: {error}");
    let mut classified = if permanent {
        DeliveryError::permanent(reason)
    } else {
        DeliveryError::retryable(reason)
    };
    if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::QueueFull)) {
        classified.retry_after = Some(Duration::from_millis(100));
    }
    classified
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_records_answer_counts_on_its_own() {
        let full = DeliveryError::retryable("kafka: queue full".into());
        let large = DeliveryError::permanent("kafka: message too large".into());
        assert_eq!(partial(Vec::new(), 3), Answer::Delivered);
        assert_eq!(
            partial(vec![(0, full.clone()), (1, full.clone())], 2),
            Answer::Failed(full.clone()),
            "all refused alike: the batch failed"
        );
        assert_eq!(
            partial(vec![(1, large.clone())], 3),
            Answer::Partial(vec![(1, large.clone())]),
            "one refused: the other two were written and are not sent again"
        );
        assert_eq!(
            partial(vec![(0, full.clone()), (1, large.clone())], 2),
            Answer::Partial(vec![(0, full), (1, large)]),
            "all failed, for different reasons: each gets its own"
        );
    }
}
