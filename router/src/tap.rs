//! The event debugger's reader of the ingest topic. It joins no consumer group and
//! commits nothing: it reads every partition from its end (events arriving from now
//! on), so it takes nothing from the routers and survives none of their rebalances.
//! It hands records of the sources someone watches to a [`TapSink`] and ends on its own
//! once nobody has watched for [`LINGER`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use switchyard_config::KafkaConfig;
use switchyard_schemas::record::header;

/// How long the tap keeps reading with nobody watching (a reconnecting viewer finds it running).
pub const LINGER: Duration = Duration::from_secs(30);
/// How often the topic's partition count is read again, to follow added partitions.
const METADATA_EVERY: Duration = Duration::from_secs(30);
/// A failed tap waits this long before it is started again for a waiting viewer.
const FAILURE_PAUSE: Duration = Duration::from_secs(2);

/// Where the tap's records go (the control plane's debugger).
pub trait TapSink: Send + Sync + 'static {
    fn anyone_watching(&self) -> bool;
    fn watching(&self, source_id: &str) -> bool;
    fn push(&self, source_id: &str, value: &[u8]);
    /// Called once when the tap ends, whatever the reason.
    fn stopped(&self);
}

/// Starts the tap on its own thread and returns at once.
pub fn spawn(config: KafkaConfig, sink: Arc<dyn TapSink>) {
    let started = std::thread::Builder::new().name("debugger-tap".into()).spawn({
        let sink = sink.clone();
        move || {
            if let Err(error) = read(&config, &*sink) {
                tracing::warn!(%error, topic = %config.topic, "event debugger tap failed");
                std::thread::sleep(FAILURE_PAUSE);
            }
            tracing::info!("event debugger tap stopped");
            sink.stopped();
        }
    });
    if let Err(error) = started {
        tracing::error!(%error, "cannot start the event debugger tap");
        sink.stopped();
    }
}

fn read(config: &KafkaConfig, sink: &dyn TapSink) -> Result<(), KafkaError> {
    // The group id is required by librdkafka and unused: the tap assigns partitions
    // itself and never commits.
    let client = switchyard_kafka::manual_consumer(
        &config.brokers,
        "switchyard-debugger",
        &[("fetch.wait.max.ms", "100")],
        &config.options,
    );
    let consumer: BaseConsumer = client.create()?;
    let mut partitions = 0;
    let mut metadata_at: Option<Instant> = None;
    let mut idle_since: Option<Instant> = None;
    loop {
        if metadata_at.is_none_or(|at| at.elapsed() >= METADATA_EVERY) {
            partitions = follow_partitions(&consumer, &config.topic, partitions)?;
            metadata_at = Some(Instant::now());
        }
        if sink.anyone_watching() {
            idle_since = None;
        } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= LINGER {
            return Ok(());
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let source = message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|h| h.key == header::SOURCE_ID)
                        .and_then(|h| h.value)
                        .and_then(|value| std::str::from_utf8(value).ok())
                });
                if let (Some(source), Some(value)) = (source, message.payload())
                    && sink.watching(source)
                {
                    sink.push(source, value);
                }
            }
            Some(Err(error)) => tracing::debug!(%error, "event debugger tap read error; librdkafka retries"),
            None => {}
        }
    }
}

/// Assigns partitions the tap doesn't read yet, from their end; returns the count.
fn follow_partitions(consumer: &BaseConsumer, topic: &str, known: i32) -> Result<i32, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| i32::try_from(t.partitions().len()).unwrap_or(i32::MAX));
    if count > known {
        let mut added = TopicPartitionList::new();
        for partition in known..count {
            added.add_partition_offset(topic, partition, Offset::End)?;
        }
        consumer.incremental_assign(&added)?;
        tracing::info!(topic, partitions = count, "event debugger tap reading");
    }
    Ok(count)
}
