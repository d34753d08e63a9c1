//! `switchyard create-topic`: creates the ingest topic on a real cluster, so operators
//! choose its partition count (the router's unit of parallelism) up front. With
//! `--config`, the cluster and how to reach it (TLS, SASL) come from the file's `[kafka]`.

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use switchyard_config::KafkaConfig;

#[derive(Debug, clap::Args)]
pub struct CreateTopic {
    /// Overrides the file's brokers; required without `--config`.
    #[arg(long, env = "SWITCHYARD_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// A configuration file whose `[kafka]` section names the cluster and its TLS/SASL.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    #[arg(long, default_value = "switchyard.ingest")]
    topic: String,
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    partitions: i32,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
    replication_factor: i32,
}

pub fn create(args: CreateTopic) -> anyhow::Result<()> {
    let mut kafka = match &args.config {
        Some(path) => crate::config::Config::load(path)?
            .kafka
            .with_context(|| format!("{}: no [kafka] section", path.display()))?,
        None => KafkaConfig::new(""),
    };
    if let Some(brokers) = &args.kafka_brokers {
        kafka.brokers = brokers.clone();
    }
    if kafka.brokers.is_empty() {
        bail!("kafka brokers: pass --kafka-brokers or --config with a [kafka] section");
    }
    crate::serve::check_kafka(&kafka)?;
    let admin: AdminClient<DefaultClientContext> = switchyard_kafka::client(&kafka.brokers, &kafka.options)
        .create()
        .context("cannot create a Kafka admin client")?;
    let topic = NewTopic::new(
        &args.topic,
        args.partitions,
        TopicReplication::Fixed(args.replication_factor),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let results = runtime
        .block_on(admin.create_topics([&topic], &options))
        .with_context(|| format!("create topic request to {} failed", kafka.brokers))?;
    for result in results {
        match result {
            Ok(name) => println!("created topic {name} with {} partitions", args.partitions),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                println!("topic {name} already exists")
            }
            Err((name, code)) => bail!("cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}
