//! The poll loop. It runs as its own task; a supervisor's bounded mailbox makes it
//! wait instead of buffering without limit.

use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use switchyard_actors::{Inbound, Outcome};
use switchyard_schemas::config::KafkaConfig;
use switchyard_schemas::record::RecordHeaders;
use tokio::sync::watch;

use crate::topology::Topology;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("kafka consumer failed: {0}")]
    Kafka(#[from] KafkaError),
}

/// Consumes `config.topic` as `group_id` until `stop` turns true.
pub async fn run_consumer(
    config: &KafkaConfig,
    group_id: &str,
    topology: Topology,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ConsumerError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("broker.address.family", "v4");
    for (key, value) in &config.options {
        client.set(key, value);
    }
    let consumer: StreamConsumer = client.create()?;
    consumer.subscribe(&[config.topic.as_str()])?;
    tracing::info!(topic = %config.topic, group_id, "router consuming");
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "kafka poll failed");
                continue;
            }
        };
        let headers = message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>())
            .unwrap_or_default();
        match RecordHeaders::from_pairs(headers) {
            Ok(headers) => {
                dispatch(
                    &topology,
                    headers,
                    message.payload().unwrap_or_default().to_vec(),
                )
                .await
            }
            Err(error) => {
                tracing::warn!(partition = message.partition(), offset = message.offset(), %error, "unreadable record")
            }
        }
        consumer.store_offset_from_message(&message)?;
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

async fn dispatch(topology: &Topology, headers: RecordHeaders, value: Vec<u8>) {
    let Some(supervisor) = topology.supervisor(&headers.source_id) else {
        tracing::warn!(source_id = %headers.source_id, "record for an unknown source");
        return;
    };
    let source_id = headers.source_id.clone();
    match supervisor.send(Inbound { headers, value }).await {
        Ok(Outcome::Delivered { .. }) => {}
        Ok(Outcome::Rejected { reason }) => tracing::warn!(%source_id, %reason, "record rejected"),
        Err(error) => tracing::error!(%source_id, %error, "source supervisor unavailable"),
    }
}
