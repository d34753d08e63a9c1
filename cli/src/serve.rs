//! Starting the long-running roles and stopping them in order: stop taking requests,
//! flush what Kafka hasn't acknowledged, then stop the router.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use anyhow::Context;
use switchyard_ingest::{IngestState, KafkaSink, SourceRegistry, server};
use switchyard_ops::{Ops, Readiness};
use switchyard_router::{ArchiveSetup, DeadLetterWriter, RouterConsumer, Topology};
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
    // Read once: the watcher compares later contents with exactly what was loaded.
    let bytes =
        std::fs::read(&config_path).with_context(|| format!("cannot read config file {}", config_path.display()))?;
    let config = Config::from_bytes(&bytes, &config_path)?;
    let loaded = Loaded {
        bytes,
        path: config_path,
    };
    actix_web::rt::System::new().block_on(serve(loaded, config, kafka_brokers, roles))
}

/// The configuration file and the contents the running configuration came from.
struct Loaded {
    path: PathBuf,
    bytes: Vec<u8>,
}

async fn serve(config_path: Loaded, config: Config, kafka_brokers: Option<String>, roles: Roles) -> anyhow::Result<()> {
    if config.sources.is_empty() {
        anyhow::bail!("sources: at least one [[sources]] entry is needed to run ingest or a router");
    }
    let mut kafka = config.kafka.clone();
    if let Some(brokers) = kafka_brokers {
        kafka.get_or_insert_with(|| KafkaConfig::new("")).brokers = brokers;
    }
    let (kafka, _local_broker) = match kafka {
        Some(kafka) => (kafka, None),
        None if roles.ingest && roles.router => {
            let mut kafka = KafkaConfig::new("");
            let broker = LocalBroker::start(
                &[kafka.topic.as_str(), config.router.dead_letter_topic.as_str()]
                    .into_iter()
                    .chain(config.router.retry_topic())
                    .collect::<Vec<_>>(),
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
        let retry_topic = config.router.retry_topic();
        let mut writer = DeadLetterWriter::new(&kafka, &config.router.dead_letter_topic)
            .context("cannot create the dead-letter producer")?;
        if let Some(topic) = retry_topic {
            writer = writer.with_retry_topic(topic);
        }
        let writer = writer.start();
        let archive = match &config.archive {
            Some(archive) => Some(ArchiveSetup {
                keys: Arc::new(crate::archive::key_ring(archive)?),
                config: archive.clone(),
            }),
            None => None,
        };
        let topology = Topology::start(
            &config.source_configs(),
            &config.source_transforms(),
            &config.destinations,
            writer.clone().recipient(),
            retry_topic.map(|_| writer.recipient()),
            archive,
            config.router.dedup(),
        )?;
        let consumer = RouterConsumer::start(&kafka, &config.router.group_id, retry_topic, topology.clone())?;
        if let Some(every) = topology.suppression_refresh() {
            actix_web::rt::spawn(refresh_suppression(topology.clone(), every));
        }
        Some((consumer, topology))
    } else {
        None
    };
    let topology = router.as_ref().map(|(_, topology)| topology.clone());
    let ingest = if roles.ingest {
        Some(Arc::new(IngestState {
            sources: SourceRegistry::new(&config.source_configs(), config.ingest.max_batch_events),
            sink: KafkaSink::new(&kafka)?,
            limits: config.ingest.limits(),
            trust_forwarded_for: config.ingest.trust_forwarded_for,
            refused: Default::default(),
        }))
    } else {
        None
    };
    if !config.ops.listen.is_empty() {
        let ops = Ops {
            ingest: ingest.clone(),
            topology: topology.clone(),
            consumer: router.as_ref().map(|(consumer, _)| consumer.stats()),
            readiness: Arc::new(Readiness::new(&kafka.brokers, &kafka.options, &kafka.topic)),
            max_producer_queue: config.ops.max_producer_queue,
        };
        let (server, addr) = switchyard_ops::bind(&config.ops.listen, ops)?;
        actix_web::rt::spawn(server);
        tracing::info!(%addr, "ops listening: /metrics /healthz /readyz /actors");
        // A line on stdout for scripts and tests that start us on port 0.
        println!("ops listening on http://{addr}");
    }

    if let Some(state) = ingest {
        actix_web::rt::spawn(reload_on_change(config_path, topology, Some(state.clone())));
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
        actix_web::rt::spawn(reload_on_change(config_path, topology, None));
        shutdown_signal().await?;
    }

    if let Some((router, _)) = router {
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

/// How often the configuration file is checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Re-reads the configuration file on SIGHUP, or when its contents change (checked
/// every two seconds: polling works the same for an edited file and for a Kubernetes
/// ConfigMap whose symlinks are swapped). Sources and destinations, with their
/// transforms, are applied while running: the router's actors first, so a new source's
/// records have a supervisor before ingest takes its key. Other sections (kafka,
/// ingest, router) are read at start only. A file that doesn't load or compile is
/// refused whole and the running configuration stays.
/// Keeps the sources' suppression lists (users deleted from the archive) current.
async fn refresh_suppression(topology: Topology, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(error) = topology.refresh_suppression().await {
            tracing::warn!(%error, "cannot read the suppression list; keeping the last one");
        }
    }
}

async fn reload_on_change(loaded: Loaded, topology: Option<Topology>, ingest: Option<Arc<IngestState>>) {
    let Loaded { path, bytes: mut seen } = loaded;
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP; configuration reload is off");
        return;
    };
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        let changed = tokio::select! {
            signal = hangup.recv() => match signal {
                Some(()) => match std::fs::read(&path) {
                    Ok(bytes) => Some(bytes),
                    Err(error) => {
                        tracing::error!(path = %path.display(), %error, "configuration reload refused: cannot read the file");
                        None
                    }
                },
                None => return,
            },
            _ = tick.tick() => match std::fs::read(&path) {
                Ok(now) if now != seen => {
                    tracing::info!(path = %path.display(), "configuration file changed");
                    Some(now)
                }
                _ => None,
            }
        };
        let Some(bytes) = changed else { continue };
        if let Err(error) = reload(&path, &bytes, topology.as_ref(), ingest.as_deref()).await {
            tracing::error!(
                error = format!("{error:#}"),
                "configuration reload refused; keeping the running one"
            );
        }
        seen = bytes;
    }
}

async fn reload(
    path: &std::path::Path,
    bytes: &[u8],
    topology: Option<&Topology>,
    ingest: Option<&IngestState>,
) -> anyhow::Result<()> {
    let next = Config::from_bytes(bytes, path)?;
    if let Some(topology) = topology {
        let summary = topology
            .reload(&next.source_configs(), &next.source_transforms(), &next.destinations)
            .await?;
        tracing::info!(
            sources_added = summary.sources_added,
            sources_changed = summary.sources_changed,
            sources_removed = summary.sources_removed,
            destinations_added = summary.added,
            destinations_changed = summary.changed,
            destinations_removed = summary.removed,
            destinations_unchanged = summary.unchanged,
            "configuration reloaded"
        );
    }
    if let Some(ingest) = ingest {
        ingest.sources.reload(&next.source_configs());
        tracing::info!(sources = ingest.sources.len(), "ingest sources reloaded");
    }
    Ok(())
}
