//! `switchyard create-topic`: creates the ingest topic on a real cluster, so operators
//! choose its partition count (the router's unit of parallelism) up front.

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

#[derive(Debug, clap::Args)]
pub struct CreateTopic {
    #[arg(long, env = "SWITCHYARD_KAFKA_BROKERS")]
    kafka_brokers: String,
    #[arg(long, default_value = "switchyard.ingest")]
    topic: String,
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    partitions: i32,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
    replication_factor: i32,
}

pub fn create(args: CreateTopic) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka_brokers)
        .set("broker.address.family", "v4")
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
        .with_context(|| format!("create topic request to {} failed", args.kafka_brokers))?;
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
