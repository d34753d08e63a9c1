//! A tansu broker per test, and reading its topics back.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, unique_topic};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// One tansu broker process (in-memory storage unless it authenticates), stopped when dropped.
#[derive(Debug)]
pub struct Tansu {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

/// A broker process in `dir`, once it accepts connections.
fn spawn(dir: &std::path::Path, port: u16, advertised: u16, storage: &str, authentication: bool) -> Child {
    let binary = tansu_binary();
    let child = Command::new(&binary)
        .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{port}")])
        .args(["--advertised-listener-url", &format!("tcp://127.0.0.1:{advertised}")])
        .args(["--storage-engine", storage])
        .args(authentication.then_some("--authentication"))
        .current_dir(dir)
        .env_remove("STORAGE_ENGINE")
        .env_remove("LISTENER_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start tansu ({}): {error}. Install it with `make tansu` \
                 (cargo install tansu --locked --version 0.6.0 --features dynostore) or set TANSU_BIN",
                binary.display()
            )
        });
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "tansu did not listen on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(path);
    }
    let home_bin = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/tansu"));
    match home_bin.filter(|path| path.exists()) {
        Some(path) => path,
        None => PathBuf::from("tansu"),
    }
}

impl Tansu {
    /// Starts a broker on a free port and waits until it accepts connections.
    pub fn start() -> Tansu {
        Self::start_on(free_port())
    }

    /// Starts a broker on `port` (to restart one where clients expect it).
    pub fn start_on(port: u16) -> Tansu {
        Self::start_advertising(port, port)
    }

    /// Starts a broker on `port` that tells clients to connect to `advertised` (a TLS
    /// terminator in front of it).
    pub fn start_advertising(port: u16, advertised: u16) -> Tansu {
        let dir = tempfile::tempdir().expect("temp dir for tansu");
        let child = spawn(dir.path(), port, advertised, "memory://tansu/", false);
        Tansu {
            child: Some(child),
            port,
            _dir: dir,
        }
    }

    /// Starts a broker that takes only SASL/SCRAM-SHA-512 clients, knowing `user` with
    /// `password`. Once authentication is on, tansu asks every request to authenticate,
    /// the user-creating one too: so the user is made on a broker without it, over a
    /// SQLite log the authenticating broker then opens.
    pub fn start_scram(port: u16, advertised: u16, user: &str, password: &str) -> Tansu {
        let dir = tempfile::tempdir().expect("temp dir for tansu");
        let storage = "sqlite://tansu.db";
        let mut open = Tansu {
            child: Some(spawn(dir.path(), port, port, storage, false)),
            port,
            _dir: tempfile::tempdir().expect("temp dir"),
        };
        let created = Command::new(tansu_binary())
            .args(["user", "create", "--broker", &format!("tcp://127.0.0.1:{port}")])
            .args(["--mechanism", "scram512", user, password])
            .output()
            .expect("run tansu user create");
        assert!(
            created.status.success(),
            "tansu user create: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        open.stop();
        let child = spawn(dir.path(), port, advertised, storage, true);
        Tansu {
            child: Some(child),
            port,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker the way an operator would (it ignores SIGTERM), then for sure.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Creates a topic through the Kafka admin API.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        create_topic(client_config(&self.brokers()), name, partitions).await;
    }
}

/// Creates a topic with an admin client of `config`.
pub(crate) async fn create_topic(config: ClientConfig, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .expect("create_topics request");
    for result in results {
        result.unwrap_or_else(|(topic, error)| panic!("create topic {topic}: {error}"));
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4");
    config
}

/// Produces events to one partition of `topic` as an external producer would: the
/// record format's headers (source id, schema version) and the event JSON as value.
pub async fn produce_events(brokers: &str, topic: &str, partition: i32, source_id: &str, events: &[serde_json::Value]) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    // One record per batch: tansu answers a fetch that starts inside a record batch with
    // nothing (Kafka returns the enclosing batch), which a consumer resuming a paused
    // partition mid-batch would wait on forever.
    let producer: FutureProducer = client_config(brokers)
        .set("batch.num.messages", "1")
        .create()
        .expect("producer");
    let mut deliveries = Vec::with_capacity(events.len());
    for event in events {
        let value = serde_json::to_vec(event).expect("event JSON");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "switchyard-source-id",
                value: Some(source_id),
            })
            .insert(Header {
                key: "switchyard-schema-version",
                value: Some("1"),
            });
        let record = FutureRecord::<(), _>::to(topic)
            .partition(partition)
            .payload(&value)
            .headers(headers);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(error, _)| error)
                .expect("queued"),
        );
    }
    for delivery in deliveries {
        delivery.await.expect("delivered").expect("broker took it");
    }
}

/// Reads every partition of `topic` from the beginning until `expected` records have
/// arrived or `timeout` passes, and returns what arrived. Counting records rather than
/// trusting watermarks: tansu's can lag.
pub fn read_records(brokers: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<OwnedMessage> {
    read_until(brokers, topic, timeout, |records| records.len() >= expected)
}

/// Reads every partition of `topic` from the beginning until `done` says so or
/// `timeout` passes, and returns what arrived.
pub fn read_until(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = client_config(brokers)
        .set("group.id", unique_topic("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("assign partition");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while !done(&records) && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => records.push(message.detach()),
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None => {}
        }
    }
    records
}

/// A record's header value as text.
pub fn header(record: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = record.headers()?;
    headers
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| header.value)
        .map(|value| String::from_utf8_lossy(value).into_owned())
}
