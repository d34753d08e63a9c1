//! The one place Switchyard's Kafka clients get their base settings: producers their
//! durability (ingest, the dead-letter writer and Kafka destinations can't drift apart),
//! consumers their manual commits (the router and the event debugger's tap); and the
//! probe that checks TLS and SASL settings at start (`probe.rs`).

mod probe;

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

pub use probe::{ProbeError, probe};

/// A plain client (admin, metadata checks): the brokers, then the operator's `options`.
pub fn client(brokers: &str, options: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4");
    for (key, value) in options {
        config.set(key, value);
    }
    config
}

/// A producer that loses nothing it acknowledged: idempotent, acks from all in-sync
/// replicas. `message_timeout_ms` bounds how long a record may wait for the cluster
/// (0: retry until it is taken). `tuning` comes next (batching, queue sizes), and the
/// operator's `options` last, so credentials and TLS settings always apply.
pub fn durable_producer(
    brokers: &str,
    message_timeout_ms: u64,
    tuning: &[(&str, &str)],
    options: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", message_timeout_ms.to_string())
        // Brokers here listen on IPv4; trying IPv6 first only adds connect delays.
        .set("broker.address.family", "v4");
    for (key, value) in tuning {
        config.set(*key, *value);
    }
    for (key, value) in options {
        config.set(key, value);
    }
    config
}

/// A consumer that commits only when told to. `settings` come next, and the operator's
/// `options` last, as for producers.
pub fn manual_consumer(
    brokers: &str,
    group_id: &str,
    settings: &[(&str, &str)],
    options: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("broker.address.family", "v4");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    for (key, value) in options {
        config.set(key, value);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_options_win_over_tuning_and_durability_is_set() {
        let options = BTreeMap::from([("linger.ms".to_string(), "50".to_string())]);
        let config = durable_producer("b:9092", 1000, &[("linger.ms", "2")], &options);
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("message.timeout.ms"), Some("1000"));
    }
}
