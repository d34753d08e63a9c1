//! The poll loop, on a thread of its own (a blocked poll never stalls an actor, and a
//! busy actor never stalls the poll). Each record is registered with the offset
//! tracker and handed to its source's supervisor; the tracker's committable positions
//! are committed every half second and on shutdown. On a revoke, the finished prefix
//! of each revoked partition is committed and the rest forgotten: its new owner reads
//! those records again (at-least-once).

use std::thread::JoinHandle;
use std::time::Duration;

use actix::prelude::{MailboxError, SendError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use switchyard_actors::{Ack, DeadLetter, Inbound, Stage};
use switchyard_schemas::config::KafkaConfig;
use switchyard_schemas::record::RecordHeaders;
use tokio::sync::watch;

use crate::offsets::OffsetTracker;
use crate::topology::Topology;

const COMMIT_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("kafka consumer failed: {0}")]
    Kafka(#[from] KafkaError),
    #[error("cannot start the consumer thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the consumer thread panicked")]
    Panicked,
}

/// The running consumer; [`RouterConsumer::stop`] commits and returns.
#[derive(Debug)]
pub struct RouterConsumer {
    stop: watch::Sender<bool>,
    thread: JoinHandle<Result<(), ConsumerError>>,
    tracker: OffsetTracker,
}

impl RouterConsumer {
    /// Subscribes `group_id` to the ingest topic and starts consuming.
    pub fn start(config: &KafkaConfig, group_id: &str, topology: Topology) -> Result<Self, ConsumerError> {
        let tracker = OffsetTracker::default();
        let consumer = create(config, group_id, tracker.clone())?;
        consumer.subscribe(&[config.topic.as_str()])?;
        tracing::info!(topic = %config.topic, group_id, "router consuming");
        let (stop, stopped) = watch::channel(false);
        let thread_tracker = tracker.clone();
        let thread = std::thread::Builder::new()
            .name("kafka-consumer".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(consume(consumer, topology, thread_tracker, stopped))
            })?;
        Ok(RouterConsumer { stop, thread, tracker })
    }

    pub fn tracker(&self) -> &OffsetTracker {
        &self.tracker
    }

    /// Stops polling, commits what is finished, and waits for the thread.
    pub fn stop(self) -> Result<(), ConsumerError> {
        let _ = self.stop.send(true);
        self.thread.join().map_err(|_| ConsumerError::Panicked)?
    }
}

struct RouterContext {
    tracker: OffsetTracker,
}

impl ClientContext for RouterContext {}

impl ConsumerContext for RouterContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else { return };
        let mut finished = TopicPartitionList::new();
        for element in revoked.elements() {
            if let Some(position) = self.tracker.revoke(element.topic(), element.partition()) {
                let _ = finished.add_partition_offset(element.topic(), element.partition(), Offset::Offset(position));
            }
        }
        tracing::info!(partitions = revoked.count(), "partitions revoked");
        if finished.count() > 0 {
            commit(consumer, &finished, CommitMode::Sync);
        }
    }
}

fn create(
    config: &KafkaConfig,
    group_id: &str,
    tracker: OffsetTracker,
) -> Result<StreamConsumer<RouterContext>, KafkaError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        // The broker answers a fetch at once when records are waiting; this bounds the
        // wait when none are, which is the router's added latency on a quiet topic.
        .set("fetch.wait.max.ms", "20")
        .set("broker.address.family", "v4");
    for (key, value) in &config.options {
        client.set(key, value);
    }
    client.create_with_context(RouterContext { tracker })
}

fn commit<C: Consumer<X>, X: ConsumerContext>(consumer: &C, positions: &TopicPartitionList, mode: CommitMode) {
    match consumer.commit(positions, mode) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, "offset commit failed; it is retried with the next one"),
    }
}

fn commit_finished(consumer: &StreamConsumer<RouterContext>, tracker: &OffsetTracker, mode: CommitMode) {
    let mut positions = TopicPartitionList::new();
    for (topic, partition, position) in tracker.to_commit() {
        let _ = positions.add_partition_offset(&topic, partition, Offset::Offset(position));
    }
    if positions.count() > 0 {
        commit(consumer, &positions, mode);
    }
}

async fn consume(
    consumer: StreamConsumer<RouterContext>,
    topology: Topology,
    tracker: OffsetTracker,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ConsumerError> {
    let mut commit_tick = tokio::time::interval(COMMIT_EVERY);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = commit_tick.tick() => commit_finished(&consumer, &tracker, CommitMode::Async),
            message = consumer.recv() => match message {
                Ok(message) => {
                    let ack = tracker.begin(message.topic(), message.partition(), message.offset());
                    dispatch(&topology, &message, ack).await;
                }
                Err(error) => tracing::warn!(%error, "kafka poll failed"),
            },
        }
    }
    commit_finished(&consumer, &tracker, CommitMode::Sync);
    tracing::info!(in_flight = tracker.in_flight(), "router consumer stopped");
    Ok(())
}

async fn dispatch(topology: &Topology, message: &BorrowedMessage<'_>, ack: Ack) {
    let value = message.payload().unwrap_or_default().to_vec();
    let pairs: Vec<(&str, Option<&[u8]>)> = message
        .headers()
        .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    let headers = match RecordHeaders::from_pairs(pairs) {
        Ok(headers) => headers,
        Err(error) => return dead_letter(topology, "unknown", None, error.to_string(), value, ack).await,
    };
    let Some(supervisor) = topology.supervisor(&headers.source_id) else {
        let reason = format!("no source {:?} is configured", headers.source_id);
        let (source_id, message_id) = (headers.source_id.clone(), headers.message_id.clone());
        return dead_letter(topology, &source_id, message_id, reason, value, ack).await;
    };
    let source_id = headers.source_id.clone();
    // No round trip per record: the mailbox keeps the order, and only a full one waits.
    let result = match supervisor.try_send(Inbound { headers, value, ack }) {
        Ok(()) => Ok(()),
        Err(SendError::Full(inbound)) => supervisor.send(inbound).await.map(drop),
        Err(SendError::Closed(_)) => Err(MailboxError::Closed),
    };
    if let Err(error) = result {
        tracing::error!(%source_id, %error, "source supervisor unavailable; the record will be redelivered");
    }
}

async fn dead_letter(
    topology: &Topology,
    source_id: &str,
    message_id: Option<String>,
    reason: String,
    value: Vec<u8>,
    ack: Ack,
) {
    tracing::warn!(source_id, %reason, "unroutable record");
    let letter = DeadLetter {
        source_id: source_id.to_string(),
        destination_id: None,
        stage: Stage::Validate,
        reason,
        attempts: 0,
        message_id,
        value,
        ack,
    };
    if let Err(error) = topology.dead_letters().send(letter).await {
        tracing::error!(%error, "dead-letter writer unavailable; the record will be redelivered");
    }
}
