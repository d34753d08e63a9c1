//! The embedded default broker: librdkafka's mock cluster, in this process and in
//! memory. It lets `make run` work with nothing installed; nothing in it survives exit.

use anyhow::Context;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

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
    /// Starts the cluster and creates `topics` (the mock broker can't serve CreateTopics).
    pub fn start(topics: &[&str], partitions: i32) -> anyhow::Result<Self> {
        let cluster = MockCluster::new(1).context("cannot start the local in-memory Kafka broker")?;
        for topic in topics {
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
