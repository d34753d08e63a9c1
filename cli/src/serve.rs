//! Starting the long-running roles and stopping them in order: stop taking requests,
//! flush what Kafka hasn't acknowledged, then stop the router.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use anyhow::Context;
use switchyard_config::KafkaConfig;
use switchyard_ingest::{IngestState, KafkaSink, SourceRegistry, server};
use switchyard_ops::{Ops, Readiness};
use switchyard_router::{ArchiveSetup, DeadLetterWriter, RouterConsumer, Topology, TopologyOptions};

use crate::config::Config;
use crate::live::{Effective, Live, effective};
use crate::local_broker::{self, LocalBroker};
use switchyard_control::store::LiveConfig;

#[derive(Debug, Clone, Copy)]
pub struct Roles {
    pub ingest: bool,
    pub router: bool,
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

pub fn start(config_path: PathBuf, kafka_brokers: Option<String>, roles: Roles) -> anyhow::Result<()> {
    // Read once: the watcher compares later contents with exactly what was loaded.
    let bytes =
        std::fs::read(&config_path).with_context(|| format!("cannot read config file {}", config_path.display()))?;
    let config = Config::from_bytes(&bytes, &config_path)?;
    config
        .check_serving(roles.ingest)
        .with_context(|| format!("config file {} is not valid", config_path.display()))?;
    let loaded = Loaded {
        bytes,
        path: config_path,
    };
    actix_web::rt::System::new().block_on(serve(loaded, config, kafka_brokers, roles))
}

/// How long the first connection to a TLS or SASL cluster may take at start.
const KAFKA_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS or SASL cluster is asked for metadata once before anything starts: settings it
/// refuses stop the process with the setting named; a cluster not up yet is only warned
/// about, since every client reconnects on its own.
pub fn check_kafka(kafka: &KafkaConfig) -> anyhow::Result<()> {
    if !kafka.is_secured() {
        return Ok(());
    }
    let client = switchyard_kafka::client(&kafka.brokers, &kafka.options);
    match switchyard_kafka::probe(&client, KAFKA_PROBE_TIMEOUT) {
        Ok(()) => Ok(()),
        Err(error @ switchyard_kafka::ProbeError::Refused { .. }) => {
            Err(anyhow::anyhow!("cannot connect to kafka at {}: {error}", kafka.brokers))
        }
        Err(error) => {
            tracing::warn!(brokers = %kafka.brokers, %error, "kafka not reachable yet; clients keep trying");
            Ok(())
        }
    }
}

/// The configuration file and the contents the running configuration came from.
struct Loaded {
    path: PathBuf,
    bytes: Vec<u8>,
}

async fn serve(config_path: Loaded, config: Config, kafka_brokers: Option<String>, roles: Roles) -> anyhow::Result<()> {
    let live = Live::open(&config).await?;
    let live_now = match &live {
        Some(live) => Some(live.fetch().await?),
        None => None,
    };
    let running = effective(&config, live_now.as_ref())?;
    if running.sources.is_empty() && live.is_none() {
        anyhow::bail!(
            "sources: at least one [[sources]] entry (or a [control] workspace) is needed to run ingest or a router"
        );
    }
    let mut kafka = config.kafka.clone();
    if let Some(brokers) = kafka_brokers {
        kafka.get_or_insert_with(|| KafkaConfig::new("")).brokers = brokers;
    }
    let (kafka, _local_broker) = match kafka {
        Some(kafka) => (kafka, None),
        None if roles.ingest && roles.router => {
            let mut kafka = KafkaConfig::new("");
            let mut topics: Vec<(&str, i32)> = [kafka.topic.as_str(), config.router.dead_letter_topic.as_str()]
                .into_iter()
                .map(|topic| (topic, local_broker::DEFAULT_PARTITIONS))
                .collect();
            topics.extend(
                config
                    .router
                    .retry_topic()
                    .map(|topic| (topic, local_broker::RETRY_PARTITIONS)),
            );
            let broker = LocalBroker::start(&topics)?;
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

    check_kafka(&kafka)?;

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
                keys: Arc::new(crate::archive::key_ring(&config, archive)?),
                config: archive.clone(),
            }),
            None => None,
        };
        let topology = Topology::start(
            &running.sources,
            &running.transforms,
            &running.destinations,
            writer.clone().recipient(),
            TopologyOptions {
                parking: retry_topic.map(|_| writer.recipient()),
                archive,
                dedup: config.router.dedup(),
                egress: Arc::new(config.egress.clone()),
            },
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
            sources: {
                let registry = SourceRegistry::new(&[], config.ingest.max_batch_events);
                registry.reload_specs(&running.specs);
                registry
            },
            sink: KafkaSink::new(&kafka)?,
            limits: config.ingest.limits(),
            trusted_proxies: config.ingest.proxy_hops(),
            refused: Default::default(),
            dead_letter_topic: Some(config.router.dead_letter_topic.clone()).filter(|topic| !topic.is_empty()),
            replays: Default::default(),
            browser: switchyard_ingest::browser::Browser::new(
                config.ingest.public_url.clone(),
                config.ingest.tls_paths().is_some(),
            ),
        }))
    } else {
        None
    };
    let ops_listen = config.ops.listen_for(roles.router && !roles.ingest).to_string();
    if !ops_listen.is_empty() {
        let ops = Ops {
            ingest: ingest.clone(),
            topology: topology.clone(),
            consumer: router.as_ref().map(|(consumer, _)| consumer.stats()),
            readiness: Arc::new(Readiness::new(&kafka.brokers, &kafka.options, &kafka.topic)),
            max_producer_queue: config.ops.max_producer_queue,
        };
        let (server, addr) = switchyard_ops::bind(&ops_listen, ops)?;
        actix_web::rt::spawn(server);
        tracing::info!(%addr, "ops listening: /metrics /healthz /readyz /actors");
        // A line on stdout for scripts and tests that start us on port 0.
        println!("ops listening on http://{addr}");
    }

    if let Some(state) = ingest {
        let watch = Watch {
            loaded: config_path,
            file: config.clone(),
            live,
            live_now,
        };
        actix_web::rt::spawn(reload_on_change(watch, topology, Some(state.clone())));
        let bound = server::bind(&config.ingest, state.clone())?;
        let scheme = if bound.tls { "https" } else { "http" };
        tracing::info!(addr = %bound.addr, tls = bound.tls, sources = state.sources.len(), topic = %kafka.topic, "ingest listening");
        // A line on stdout for scripts and tests that start us on port 0.
        println!("ingest listening on {scheme}://{}", bound.addr);
        let first_keyed = config
            .sources
            .iter()
            .map(|entry| &entry.source)
            .find(|source| !source.write_key.is_empty());
        // The hint names the source, never its write key: logs are shipped and read by
        // more people than the configuration file.
        if let Some(source) = first_keyed.filter(|_| !bound.tls) {
            tracing::info!(
                source_id = %source.id,
                "try: curl -u <the source's write key>: {scheme}://{}/v1/track -H 'content-type: application/json' -d '{{\"userId\":\"user-1\",\"event\":\"Signed Up\"}}'",
                bound.addr
            );
        }
        bound.server.await.context("ingest server failed")?;
        state
            .sink
            .flush(Duration::from_secs(10))
            .context("events still unacknowledged at shutdown")?;
    } else {
        let watch = Watch {
            loaded: config_path,
            file: config.clone(),
            live,
            live_now,
        };
        actix_web::rt::spawn(reload_on_change(watch, topology, None));
        crate::signals::shutdown_signal().await?;
    }

    if let Some((router, _)) = router {
        // Off this thread: the consumer may be waiting on a supervisor that runs here.
        actix_web::rt::task::spawn_blocking(move || router.stop())
            .await
            .context("router stop panicked")??;
    }
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

/// What the reload loop watches: the file, and the control plane's workspace.
struct Watch {
    loaded: Loaded,
    /// The file's configuration now running.
    file: Config,
    live: Option<Live>,
    live_now: Option<LiveConfig>,
}

/// Applies changes to the file (polled, or on SIGHUP) and to the control plane's
/// workspace (read every `refresh_secs`). A change that doesn't check out is refused
/// and the running configuration kept.
async fn reload_on_change(watch: Watch, topology: Option<Topology>, ingest: Option<Arc<IngestState>>) {
    let Watch {
        loaded: Loaded { path, bytes: mut seen },
        mut file,
        live,
        mut live_now,
    } = watch;
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP; configuration reload is off");
        return;
    };
    let every = live.as_ref().map_or(WATCH_EVERY, |live| live.every.min(WATCH_EVERY));
    let mut tick = tokio::time::interval(every);
    loop {
        let forced = tokio::select! {
            signal = hangup.recv() => match signal {
                Some(()) => true,
                None => return,
            },
            _ = tick.tick() => false,
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "configuration reload refused: cannot read the file");
                continue;
            }
        };
        let file_changed = forced || bytes != seen;
        let next_file = if file_changed {
            tracing::info!(path = %path.display(), "configuration file changed");
            match Config::from_bytes(&bytes, &path) {
                Ok(next) => Some(next),
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "configuration reload refused; keeping the running one"
                    );
                    seen = bytes;
                    continue;
                }
            }
        } else {
            None
        };
        let next_live = match &live {
            Some(live) => match live.fetch().await {
                Ok(next) => Some(next),
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "cannot read the control plane; keeping the running configuration"
                    );
                    live_now.clone()
                }
            },
            None => None,
        };
        seen = bytes;
        if next_file.is_none() && next_live == live_now {
            continue;
        }
        let candidate = next_file.as_ref().unwrap_or(&file);
        let applied = match effective(candidate, next_live.as_ref()) {
            Ok(running) => apply(&running, topology.as_ref(), ingest.as_deref()).await,
            Err(error) => Err(error),
        };
        match applied {
            Ok(()) => {
                if let Some(next) = next_file {
                    file = next;
                }
                live_now = next_live;
            }
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "configuration reload refused; keeping the running one"
                );
            }
        }
    }
}

async fn apply(running: &Effective, topology: Option<&Topology>, ingest: Option<&IngestState>) -> anyhow::Result<()> {
    if let Some(topology) = topology {
        let summary = topology
            .reload(&running.sources, &running.transforms, &running.destinations)
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
        ingest.sources.reload_specs(&running.specs);
        tracing::info!(sources = ingest.sources.len(), "ingest sources reloaded");
    }
    Ok(())
}
