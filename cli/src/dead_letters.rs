//! `switchyard dead-letters`: what was given up on and why, from the dead-letter topic
//! (`[router].dead_letter_topic`): one JSON line per record, its headers (source,
//! destination, stage, reason, attempts) beside the event, oldest first. Reads the
//! topic from its start to where it ends now, with no consumer group (it commits
//! nothing and moves no router's place).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use switchyard_schemas::record::{dead_letter, header};

#[derive(Debug, clap::Args)]
pub struct DeadLettersArgs {
    /// The configuration whose `[kafka]` and `[router]` name the cluster and topic.
    #[arg(long)]
    config: std::path::PathBuf,
    /// Only this source's.
    #[arg(long)]
    source: Option<String>,
    /// Only this destination's.
    #[arg(long)]
    destination: Option<String>,
    /// How long to wait for the cluster.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

fn text(message: &impl Message, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
}

pub fn run(args: DeadLettersArgs) -> anyhow::Result<()> {
    let config = crate::config::Config::load(&args.config)?;
    let kafka = config
        .kafka
        .with_context(|| format!("{}: no [kafka] section", args.config.display()))?;
    crate::serve::check_kafka(&kafka)?;
    let topic = config.router.dead_letter_topic;
    if topic.is_empty() {
        bail!("router.dead_letter_topic: empty, so nothing is dead-lettered to a topic");
    }
    let timeout = Duration::from_secs(args.timeout_secs);
    let consumer: BaseConsumer = switchyard_kafka::manual_consumer(
        &kafka.brokers,
        "switchyard-dead-letters-reader",
        &[("enable.partition.eof", "false")],
        &kafka.options,
    )
    .create()
    .context("cannot create a Kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&topic), timeout)
        .with_context(|| format!("cannot read the metadata of {topic} from {}", kafka.brokers))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic} does not exist on {}", kafka.brokers);
    }
    let mut ends = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&topic, *partition, timeout)
            .with_context(|| format!("cannot read where {topic}[{partition}] ends"))?;
        if high > low {
            assignment.add_partition_offset(&topic, *partition, Offset::Offset(low))?;
            ends.push((*partition, high));
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let deadline = Instant::now() + timeout;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            bail!(
                "timed out reading {topic}: {} partition(s) not read to their end",
                ends.len()
            );
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.with_context(|| format!("reading {topic} failed"))?;
        let (partition, offset) = (message.partition(), message.offset());
        if let Some(at) = ends.iter().position(|(p, end)| *p == partition && offset + 1 >= *end) {
            ends.swap_remove(at);
        }
        let source = text(&message, header::SOURCE_ID);
        let destination = text(&message, dead_letter::DESTINATION_ID);
        let wanted = |filter: &Option<String>, value: &Option<String>| filter.is_none() || filter == value;
        if !wanted(&args.source, &source) || !wanted(&args.destination, &destination) {
            continue;
        }
        let event = message.payload().map(|bytes| {
            serde_json::from_slice::<Value>(bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(bytes)))
        });
        let line = json!({
            "message_id": text(&message, header::MESSAGE_ID),
            "source_id": source,
            "destination_id": destination,
            "stage": text(&message, dead_letter::STAGE),
            "reason": text(&message, dead_letter::REASON),
            "attempts": text(&message, dead_letter::ATTEMPTS).and_then(|a| a.parse::<u64>().ok()),
            "partition": partition,
            "offset": offset,
            "event": event,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
