//! The Kafka destination: events written to another topic (on this cluster or another)
//! in the ingest record format, with the destination's own credentials.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use switchyard_schemas::{Event, RecordHeaders, record_key};

use super::config::{EgressPolicy, KafkaDestinationConfig, broker_addresses};
use super::webhook::DeliveryError;

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

    pub fn batch_max_events(&self) -> usize {
        self.batch_max_events
    }

    /// Writes the batch and waits for every acknowledgement. A failure fails the batch,
    /// which is retried whole: records written before it are written again (at-least-once).
    pub async fn send(self, source_id: Arc<str>, events: Vec<Arc<Event>>) -> Result<(), DeliveryError> {
        self.check_cluster().await?;
        let mut deliveries = Vec::with_capacity(events.len());
        for event in &events {
            let value = serde_json::to_vec(event.as_ref())
                .map_err(|error| DeliveryError::permanent(format!("event could not be encoded: {error}")))?;
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
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                Err((error, _)) => return Err(classify(error)),
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(classify(error)),
                Err(_) => return Err(DeliveryError::retryable("the producer shut down".into())),
            }
        }
        Ok(())
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
