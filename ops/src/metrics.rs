//! `/metrics`: a registry built at each scrape from the running parts' own counters.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use switchyard_router::{ActorReport, Detail};

use crate::state::Ops;

type Labels = Vec<(&'static str, String)>;

fn counter_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn plain_counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let counter = Counter::<u64>::default();
    counter.inc_by(value);
    registry.register(name, help, counter);
}

fn plain_gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let gauge = Gauge::<i64>::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

fn set(family: &Family<Labels, Counter>, labels: Labels, value: u64) {
    family.get_or_create(&labels).inc_by(value);
}

/// One sample per `(value of label key, count)`, each with `labels` besides.
fn set_each(family: &Family<Labels, Counter>, labels: Labels, key: &'static str, counts: &[(&str, u64)]) {
    for (name, value) in counts {
        let mut labels = labels.clone();
        labels.push((key, name.to_string()));
        set(family, labels, *value);
    }
}

fn gauge(family: &Family<Labels, Gauge>, labels: Labels, value: i64) {
    family.get_or_create(&labels).set(value);
}

/// The text exposition of every metric this process has.
pub async fn render(ops: &Ops) -> String {
    let mut registry = Registry::with_prefix("switchyard");
    let errors = counter_family(
        &mut registry,
        "errors",
        "Errors by stage (ingest, validate, transform, deliver) and error_type",
    );
    if let Some(ingest) = &ops.ingest {
        ingest_metrics(&mut registry, ingest, &errors);
    }
    if let Some(consumer) = &ops.consumer {
        plain_counter(
            &mut registry,
            "consumer_records",
            "Records read from Kafka",
            consumer.records.load(Ordering::Relaxed),
        );
        plain_gauge(
            &mut registry,
            "consumer_paused_partitions",
            "Partitions paused because the actor they feed has no room",
            consumer.paused_partitions.load(Ordering::Relaxed) as i64,
        );
        plain_counter(
            &mut registry,
            "consumer_backpressure_microseconds",
            "Time records waited for room in the budget of the actor they go to",
            consumer.backpressure_micros.load(Ordering::Relaxed),
        );
        plain_counter(
            &mut registry,
            "consumer_skipped_records",
            "Records never read: offsets skipped by an offset reset or a gap in a partition",
            consumer.skipped.load(Ordering::Relaxed),
        );
        let lag = gauge_family(
            &mut registry,
            "consumer_lag",
            "Records behind the partition's end, per partition",
        );
        for (topic, partition, behind) in consumer.lag() {
            gauge(
                &lag,
                vec![("topic", topic), ("partition", partition.to_string())],
                behind,
            );
        }
    }
    if let Some(topology) = &ops.topology {
        actor_metrics(&mut registry, &topology.inspect().await, &errors);
        for (source, destination, histogram) in topology.latencies() {
            registry
                .sub_registry_with_label(("source".into(), source.into()))
                .sub_registry_with_label(("destination".into(), destination.into()))
                .register(
                    "destination_delivery_seconds",
                    "Time from a destination taking an event to its delivery, retries included",
                    histogram,
                );
        }
    }
    let mut text = String::new();
    if let Err(error) = encode(&mut text, &registry) {
        tracing::error!(%error, "metrics encoding failed");
    }
    text
}

fn ingest_metrics(registry: &mut Registry, ingest: &switchyard_ingest::IngestState, errors: &Family<Labels, Counter>) {
    let accepted = counter_family(
        registry,
        "ingest_events_accepted",
        "Events ingest wrote to Kafka, per source",
    );
    for source in ingest.sources.snapshot().iter() {
        set(
            &accepted,
            vec![("source", source.id.to_string())],
            source.accepted.load(Ordering::Relaxed),
        );
    }
    for (kind, count) in ingest.refused.counts() {
        set(
            errors,
            vec![("stage", "ingest".into()), ("error_type", kind.into())],
            count,
        );
    }
    plain_counter(
        registry,
        "ingest_browser_telemetry_requests",
        "analytics.js telemetry requests taken at POST /v1/m (counted, not stored as events)",
        ingest.browser.telemetry_posts(),
    );
    plain_gauge(
        registry,
        "ingest_producer_queue",
        "Records waiting for the broker's acknowledgement",
        i64::from(ingest.sink.in_flight()),
    );
}

fn actor_metrics(registry: &mut Registry, reports: &[ActorReport], errors: &Family<Labels, Counter>) {
    let source_events = counter_family(
        registry,
        "source_events",
        "Records through a source supervisor, by outcome",
    );
    let archive_events = counter_family(
        registry,
        "archive_events",
        "Events through a source's archive, by outcome",
    );
    let archive_objects = counter_family(registry, "archive_objects", "Archive objects written, per store");
    let archive_failures = counter_family(
        registry,
        "archive_write_failures",
        "Failed archive writes (retried), per store",
    );
    let archive_held = gauge_family(
        registry,
        "archive_held_events",
        "Events buffered or being written by the archive",
    );
    let refused_keys = counter_family(
        registry,
        "archive_key_objects_refused",
        "Archive key objects refused because their HMAC does not hold (planted or plaintext)",
    );
    let replica_pending = gauge_family(
        registry,
        "archive_replica_pending_objects",
        "Objects the replica doesn't have yet",
    );
    let source_mailbox = gauge_family(
        registry,
        "source_mailbox_records",
        "Records handed to a source supervisor and not yet taken from its mailbox",
    );
    let destination_events = counter_family(
        registry,
        "destination_events",
        "Events through a destination actor, by outcome",
    );
    let buffered = gauge_family(
        registry,
        "destination_buffered",
        "Events a destination holds (ready, waiting to retry, in flight)",
    );
    let mailbox = gauge_family(
        registry,
        "destination_mailbox_events",
        "Events handed to a destination and not yet taken from its mailbox",
    );
    let restarts = counter_family(registry, "actor_restarts", "Times a destination's client was restarted");
    let stalls = counter_family(
        registry,
        "destination_stalls",
        "Requests abandoned for getting no answer",
    );
    let panics = counter_family(
        registry,
        "destination_panics",
        "Panics of a destination's client or transforms, caught at the actor's boundary",
    );
    let filtered = counter_family(
        registry,
        "destination_events_filtered",
        "Events not sent to a destination, by reason: a transform, the event's integrations object, or its consent",
    );
    let state = gauge_family(registry, "actor_state", "1 for the state each actor is in");
    let mut validate_errors = 0;
    let mut transform_errors = 0;
    let (mut retryable, mut permanent) = (0, 0);
    for report in reports {
        let source = || ("source", report.source_id.clone());
        match &report.detail {
            Detail::Source(stats) => {
                let outcomes = [
                    ("received", stats.received),
                    ("delivered", stats.delivered),
                    ("duplicate", stats.duplicates),
                    ("suppressed", stats.suppressed),
                    ("filtered", stats.filtered),
                    ("rejected", stats.rejected),
                ];
                set_each(&source_events, vec![source()], "outcome", &outcomes);
                gauge(&source_mailbox, vec![source()], stats.queued as i64);
                validate_errors += stats.invalid;
                transform_errors += stats.rejected - stats.invalid;
            }
            Detail::Destination(stats) => {
                let destination = || ("destination", report.destination_id.clone().unwrap_or_default());
                let outcomes = [
                    ("received", stats.received),
                    ("delivered", stats.delivered),
                    ("filtered", stats.filtered),
                    ("retried", stats.retried),
                    ("dead_lettered", stats.dead_lettered),
                    ("parked", stats.parked),
                ];
                let kind = ("kind", stats.kind.to_string());
                set_each(
                    &destination_events,
                    vec![source(), destination(), kind],
                    "outcome",
                    &outcomes,
                );
                let reasons = [
                    (
                        "transform",
                        stats.filtered - stats.filtered_integrations - stats.filtered_consent,
                    ),
                    ("integrations", stats.filtered_integrations),
                    ("consent", stats.filtered_consent),
                ];
                set_each(&filtered, vec![source(), destination()], "reason", &reasons);
                gauge(&buffered, vec![source(), destination()], stats.buffered as i64);
                gauge(&mailbox, vec![source(), destination()], stats.queued as i64);
                set(&restarts, vec![source(), destination()], stats.restarts);
                set(&stalls, vec![source(), destination()], stats.stalls);
                set(&panics, vec![source(), destination()], stats.panics);
                let state_name = stats.state.as_str().to_string();
                gauge(&state, vec![source(), destination(), ("state", state_name)], 1);
                retryable += stats.retried;
                permanent += stats.dead_lettered;
            }
            Detail::Archive(stats) => {
                let outcomes = [("received", stats.received), ("archived", stats.archived)];
                set_each(&archive_events, vec![source()], "outcome", &outcomes);
                let objects = [("primary", stats.objects), ("replica", stats.replica_objects)];
                set_each(&archive_objects, vec![source()], "store", &objects);
                let failures = [("primary", stats.write_failures), ("replica", stats.replica_failures)];
                set_each(&archive_failures, vec![source()], "store", &failures);
                gauge(&archive_held, vec![source()], stats.held as i64);
                gauge(&replica_pending, vec![source()], stats.replica_pending as i64);
                set(&refused_keys, vec![source()], stats.refused_key_objects);
            }
            Detail::Unresponsive => {
                let destination = report.destination_id.clone().unwrap_or_default();
                gauge(
                    &state,
                    vec![source(), ("destination", destination), ("state", "unresponsive".into())],
                    1,
                );
            }
        }
    }
    for (stage, error_type, value) in [
        ("validate", "invalid", validate_errors),
        ("transform", "transform_failed", transform_errors),
        ("deliver", "retryable", retryable),
        ("deliver", "permanent", permanent),
    ] {
        set(
            errors,
            vec![("stage", stage.into()), ("error_type", error_type.into())],
            value,
        );
    }
}
