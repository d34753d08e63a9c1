//! The embedded default broker: librdkafka's mock cluster, in this process and in
//! memory. It lets `make run` work with nothing installed; nothing in it survives exit.
//! `switchyard local-broker` serves the same cluster on its own, so ingest and router can
//! run as separate processes with nothing installed (and be killed and restarted).

use std::path::PathBuf;

use anyhow::{Context, bail};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// Partitions of a topic created without a count: the embedded broker's topics, and
/// `--topic NAME` without `:PARTITIONS` (the mock cluster's own default for unknown topics).
pub const DEFAULT_PARTITIONS: i32 = 4;
/// Partitions of the embedded broker's retry topic. Each mock partition keeps its last
/// 100,000 records or 5 MB and drops older ones (librdkafka's `rdkafka_mock.c`, not
/// configurable), so a destination down for long could see parked events trimmed
/// before they come back. 64 partitions hold about 6 million parked events (320 MB);
/// past that the router reports the skipped offsets (an error, a metric and a failing
/// readiness) rather than losing them silently.
pub const RETRY_PARTITIONS: i32 = 64;

pub struct LocalBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for LocalBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBroker")
            .field("bootstrap", &self.cluster.bootstrap_servers())
            .finish()
    }
}

impl LocalBroker {
    /// Starts the cluster and creates each `(topic, partitions)` (the mock broker can't
    /// serve CreateTopics).
    pub fn start(topics: &[(&str, i32)]) -> anyhow::Result<Self> {
        let cluster = MockCluster::new(1).context("cannot start the local in-memory Kafka broker")?;
        for &(topic, partitions) in topics {
            cluster
                .create_topic(topic, partitions, 1)
                .with_context(|| format!("cannot create topic {topic} on the local broker"))?;
        }
        Ok(LocalBroker { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

#[derive(Debug, clap::Args)]
pub struct LocalBrokerArgs {
    /// A topic to create, as NAME or NAME:PARTITIONS (4 partitions when not given).
    /// Repeat for more. The mock cluster also creates unknown topics on first use, with 4.
    #[arg(long = "topic", value_name = "NAME[:PARTITIONS]", required = true)]
    topics: Vec<String>,
    /// Also write the bootstrap address to this file, for scripts.
    #[arg(long)]
    address_file: Option<PathBuf>,
}

/// Serves the in-memory cluster until SIGINT or SIGTERM; prints its bootstrap address.
pub fn serve(args: LocalBrokerArgs) -> anyhow::Result<()> {
    let topics = args
        .topics
        .iter()
        .map(|spec| parse_topic(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let broker = LocalBroker::start(&topics)?;
    let address = broker.bootstrap_servers();
    if let Some(path) = &args.address_file {
        // Whole or not at all: a script may be polling for the file.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, &address)
            .and_then(|()| std::fs::rename(&partial, path))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{address}");
    tracing::info!(%address, "local broker serving (in memory: nothing survives exit)");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(crate::signals::shutdown_signal())
}

fn parse_topic(spec: &str) -> anyhow::Result<(&str, i32)> {
    let (name, partitions) = match spec.split_once(':') {
        Some((name, count)) => match count.parse::<i32>() {
            Ok(n) if (1..=10_000).contains(&n) => (name, n),
            _ => bail!("--topic {spec}: partitions must be a whole number from 1 to 10000"),
        },
        None => (spec, DEFAULT_PARTITIONS),
    };
    if name.is_empty() {
        bail!("--topic {spec}: the topic name is empty");
    }
    Ok((name, partitions))
}

#[cfg(test)]
mod tests {
    use super::parse_topic;

    #[test]
    fn topic_specs_name_their_partitions_or_take_four() {
        assert_eq!(parse_topic("events:12").expect("valid spec"), ("events", 12));
        assert_eq!(parse_topic("events").expect("valid spec"), ("events", 4));
        for bad in ["events:0", "events:x", ":3", "events:-1"] {
            let error = parse_topic(bad).expect_err("refused").to_string();
            assert!(error.starts_with(&format!("--topic {bad}:")), "{error}");
        }
    }
}
