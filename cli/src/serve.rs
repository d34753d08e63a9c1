//! Starting the long-running roles and stopping them in order: stop taking requests,
//! flush what Kafka hasn't acknowledged, then stop the router.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use anyhow::Context;
use switchyard_ingest::{IngestState, KafkaSink, SourceRegistry, server};
use switchyard_router::{DeadLetterWriter, RouterConsumer, Topology};
use switchyard_schemas::config::KafkaConfig;

use crate::config::Config;
use crate::local_broker::LocalBroker;

#[derive(Debug, Clone, Copy)]
pub struct Roles {
    ingest: bool,
    router: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        ingest: true,
        router: true,
    };
    pub const INGEST: Roles = Roles {
        ingest: true,
        router: false,
    };
    pub const ROUTER: Roles = Roles {
        ingest: false,
        router: true,
    };
}

const LOCAL_PARTITIONS: i32 = 4;

pub fn start(config_path: PathBuf, kafka_brokers: Option<String>, roles: Roles) -> anyhow::Result<()> {
    let config = Config::load(&config_path)?;
    actix_web::rt::System::new().block_on(serve(config_path, config, kafka_brokers, roles))
}

async fn serve(
    config_path: PathBuf,
    config: Config,
    kafka_brokers: Option<String>,
    roles: Roles,
) -> anyhow::Result<()> {
    let mut kafka = config.kafka.clone();
    if let Some(brokers) = kafka_brokers {
        kafka.get_or_insert_with(|| KafkaConfig::new("")).brokers = brokers;
    }
    let (kafka, _local_broker) = match kafka {
        Some(kafka) => (kafka, None),
        None if roles.ingest && roles.router => {
            let mut kafka = KafkaConfig::new("");
            let broker = LocalBroker::start(
                &[kafka.topic.as_str(), config.router.dead_letter_topic.as_str()],
                LOCAL_PARTITIONS,
            )?;
            kafka.brokers = broker.bootstrap_servers();
            tracing::warn!(
                brokers = %kafka.brokers,
                "using an in-memory local kafka broker: events are not durable and vanish when this process exits; \
                 set --kafka-brokers or [kafka] for a real cluster"
            );
            (kafka, Some(broker))
        }
        None => {
            anyhow::bail!("kafka: no brokers configured; set --kafka-brokers or a [kafka] section")
        }
    };

    let router = if roles.router {
        let writer = DeadLetterWriter::new(&kafka, &config.router.dead_letter_topic)
            .context("cannot create the dead-letter producer")?
            .start();
        let topology = Topology::start(
            &config.source_configs(),
            &config.source_transforms(),
            &config.destinations,
            writer.recipient(),
            config.router.dedup(),
        )?;
        actix_web::rt::spawn(reload_on_hangup(config_path, config.clone(), topology.clone()));
        Some(RouterConsumer::start(&kafka, &config.router.group_id, topology)?)
    } else {
        None
    };

    if roles.ingest {
        let state = Arc::new(IngestState {
            sources: SourceRegistry::new(&config.source_configs(), config.ingest.max_batch_events),
            sink: KafkaSink::new(&kafka)?,
            limits: config.ingest.limits(),
            trust_forwarded_for: config.ingest.trust_forwarded_for,
        });
        let bound = server::bind(&config.ingest, state.clone())?;
        let scheme = if bound.tls { "https" } else { "http" };
        tracing::info!(addr = %bound.addr, tls = bound.tls, sources = state.sources.len(), topic = %kafka.topic, "ingest listening");
        // A line on stdout for scripts and tests that start us on port 0.
        println!("ingest listening on {scheme}://{}", bound.addr);
        if let Some(source) = config.sources.first().map(|entry| &entry.source).filter(|_| !bound.tls) {
            tracing::info!(
                "try: curl -u {}: {scheme}://{}/v1/track -H 'content-type: application/json' -d '{{\"userId\":\"user-1\",\"event\":\"Signed Up\"}}'",
                source.write_key,
                bound.addr
            );
        }
        bound.server.await.context("ingest server failed")?;
        state
            .sink
            .flush(Duration::from_secs(10))
            .context("events still unacknowledged at shutdown")?;
    } else {
        shutdown_signal().await?;
    }

    if let Some(router) = router {
        // Off this thread: the consumer may be waiting on a supervisor that runs here.
        actix_web::rt::task::spawn_blocking(move || router.stop())
            .await
            .context("router stop panicked")??;
    }
    Ok(())
}

/// SIGINT (a terminal) or SIGTERM (Kubernetes, systemd): either starts a clean stop.
async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    tracing::info!("stopping");
    Ok(())
}

/// SIGHUP re-reads the configuration file and applies its destinations: added ones
/// start, changed ones are replaced, removed ones retire, nothing restarts. Source
/// changes need a restart (ingest's keys and the consumer's routing depend on them): a
/// reload that changes sources is refused and says so.
async fn reload_on_hangup(path: PathBuf, mut current: Config, topology: Topology) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP; configuration reload is off");
        return;
    };
    while hangup.recv().await.is_some() {
        let next = match Config::load(&path) {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "configuration reload refused; keeping the running one"
                );
                continue;
            }
        };
        if next.sources != current.sources {
            tracing::error!("configuration reload refused: sources changed, which needs a restart");
            continue;
        }
        match topology.reload(&next.destinations).await {
            Ok(summary) => {
                tracing::info!(
                    added = summary.added,
                    changed = summary.changed,
                    removed = summary.removed,
                    unchanged = summary.unchanged,
                    "configuration reloaded"
                );
                current = next;
            }
            Err(error) => tracing::error!(%error, "configuration reload refused; keeping the running one"),
        }
    }
}
