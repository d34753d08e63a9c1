//! Starts a real Kafka-protocol broker (tansu) for one test and reads topics back;
//! moto (a local S3-compatible server) and a fresh Postgres database per test.
//!
//! tansu is installed by `make tansu` (the test command runs it first). A missing
//! binary is a loud failure, never a skipped test. The broker and topic readers are
//! the `kafka` feature, so a crate that needs only a database pulls in no Kafka client.

mod moto;
pub mod postgres;
pub use moto::Moto;
pub use postgres::TestDatabase;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "kafka")]
pub use kafka::*;
#[cfg(feature = "kafka")]
mod kafka_tls;
#[cfg(feature = "kafka")]
pub use kafka_tls::{TestCa, TlsBroker};
#[cfg(feature = "vendors")]
pub mod vendors;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// CPU seconds (user + system, all threads) this process has used, for benchmarks that
/// report work per CPU-second.
pub fn process_cpu_seconds() -> f64 {
    cpu_seconds("/proc/self/stat")
}

/// CPU seconds the calling thread has used: a benchmark's own work apart from a
/// receiver serving it on other threads of the process.
pub fn thread_cpu_seconds() -> f64 {
    cpu_seconds("/proc/thread-self/stat")
}

fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) close with ')'.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The admin API's URL, from the first line `switchyard control serve` prints
/// (`control listening on URL`); the child's stdout is taken.
pub fn control_url(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let line = std::io::BufReader::new(child.stdout.take().expect("stdout piped"))
        .lines()
        .next()
        .expect("a line")
        .expect("text");
    line.strip_prefix("control listening on ")
        .expect("address line")
        .to_string()
}
