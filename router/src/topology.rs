//! From configuration to running actors: a supervisor per source, a destination actor
//! per (source, destination) spread over a pool of arbiters (threads), and the
//! dead-letter writer they share. [`Topology::reload`] applies a changed destination
//! list while running: only the added, changed and removed destinations' actors start
//! or stop, and events buffered by a changed destination move to its replacement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use switchyard_actors::destination::Retire;
use switchyard_actors::{
    DeadLetter, DedupSettings, DestinationActor, DestinationConfig, Load, LogDestination, Route, SetRoutes,
    SourceSupervisor, Transform, TransformConfig,
};
use switchyard_schemas::config::SourceConfig;

/// A configuration the actors can't be built from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TopologyError(pub String);

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

struct Running {
    config: DestinationConfig,
    addr: Addr<DestinationActor>,
    route: Route,
}

struct Shared {
    arbiters: Vec<ArbiterHandle>,
    next: usize,
    dead_letters: Recipient<DeadLetter>,
    /// By (source id, destination id).
    destinations: HashMap<(String, String), Running>,
}

impl Shared {
    fn start_destination(&mut self, source_id: &str, config: &DestinationConfig, transform: Transform) -> Running {
        let arbiter = &self.arbiters[self.next % self.arbiters.len()];
        self.next += 1;
        let load = Load::new(config.max_buffered_events);
        let (source, actor_config, letters, actor_load) = (
            source_id.to_string(),
            config.clone(),
            self.dead_letters.clone(),
            load.clone(),
        );
        let addr = DestinationActor::start_in_arbiter(arbiter, move |_| {
            DestinationActor::new(&source, actor_config, letters, actor_load).with_transform(transform)
        });
        let route = Route {
            destination_id: config.id.clone(),
            recipient: addr.clone().recipient(),
            load,
        };
        Running {
            config: config.clone(),
            addr,
            route,
        }
    }
}

/// The running supervisors, by source id, and the destinations behind them.
#[derive(Clone)]
pub struct Topology {
    supervisors: Arc<HashMap<String, Addr<SourceSupervisor>>>,
    dead_letters: Recipient<DeadLetter>,
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("sources", &self.supervisors.len())
            .finish_non_exhaustive()
    }
}

fn compile_destinations(destinations: &[DestinationConfig]) -> Result<HashMap<String, Transform>, TopologyError> {
    destinations
        .iter()
        .map(|destination| {
            let transform = Transform::compile(&destination.transforms)
                .map_err(|error| TopologyError(format!("destinations {:?}: {error}", destination.id)))?;
            Ok((destination.id.clone(), transform))
        })
        .collect()
}

/// A source with no destination logs its events, so a first run shows them flowing.
fn log_route() -> Route {
    Route {
        destination_id: "log".into(),
        recipient: LogDestination::default().start().recipient(),
        load: Load::new(usize::MAX),
    }
}

impl Topology {
    /// Starts every actor. Must run inside an actix system. `source_transforms` holds
    /// each source's own transform chain, by source id.
    pub fn start(
        sources: &[SourceConfig],
        source_transforms: &HashMap<String, Vec<TransformConfig>>,
        destinations: &[DestinationConfig],
        dead_letters: Recipient<DeadLetter>,
        dedup: DedupSettings,
    ) -> Result<Self, TopologyError> {
        // Compile everything first, so a bad transform starts nothing.
        let mut compiled_sources = HashMap::new();
        for (source_id, configs) in source_transforms {
            let transform = Transform::compile(configs)
                .map_err(|error| TopologyError(format!("sources {source_id:?}: {error}")))?;
            compiled_sources.insert(source_id.clone(), transform);
        }
        let compiled_destinations = compile_destinations(destinations)?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        // The arbiters' threads live as long as the system; the handles start actors on them.
        let arbiters = (0..threads).map(|_| Arbiter::new().handle()).collect();
        let mut shared = Shared {
            arbiters,
            next: 0,
            dead_letters: dead_letters.clone(),
            destinations: HashMap::new(),
        };
        let mut supervisors = HashMap::new();
        for source in sources {
            let mut routes = Vec::new();
            for destination in destinations.iter().filter(|d| d.sources.contains(&source.id)) {
                let transform = compiled_destinations.get(&destination.id).cloned().unwrap_or_default();
                let running = shared.start_destination(&source.id, destination, transform);
                routes.push(running.route.clone());
                shared
                    .destinations
                    .insert((source.id.clone(), destination.id.clone()), running);
            }
            if routes.is_empty() {
                routes.push(log_route());
            }
            let transform = compiled_sources.get(&source.id).cloned().unwrap_or_default();
            let supervisor = SourceSupervisor::new(&source.id, routes, dead_letters.clone(), dedup)
                .with_transform(transform)
                .start();
            supervisors.insert(source.id.clone(), supervisor);
        }
        Ok(Topology {
            supervisors: Arc::new(supervisors),
            dead_letters,
            shared: Arc::new(Mutex::new(shared)),
        })
    }

    /// Applies a new destination list: starts added destinations, replaces changed ones
    /// (their buffered events move to the replacement), retires removed ones (their
    /// buffered events are finished: the destination is no longer wanted), and leaves
    /// the rest running untouched. Nothing changes if a transform doesn't compile.
    pub async fn reload(&self, destinations: &[DestinationConfig]) -> Result<ReloadSummary, TopologyError> {
        let compiled = compile_destinations(destinations)?;
        let mut summary = ReloadSummary::default();
        let mut plans = Vec::new();
        {
            let mut shared = self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for source_id in self.supervisors.keys() {
                let mut routes = Vec::new();
                let mut retire: Vec<(Addr<DestinationActor>, Option<Recipient<switchyard_actors::Routed>>)> =
                    Vec::new();
                let wanted: Vec<&DestinationConfig> =
                    destinations.iter().filter(|d| d.sources.contains(source_id)).collect();
                for destination in &wanted {
                    let key = (source_id.clone(), destination.id.clone());
                    let same = shared
                        .destinations
                        .get(&key)
                        .is_some_and(|running| running.config == **destination);
                    if same {
                        summary.unchanged += 1;
                        if let Some(running) = shared.destinations.get(&key) {
                            routes.push(running.route.clone());
                        }
                        continue;
                    }
                    let transform = compiled.get(&destination.id).cloned().unwrap_or_default();
                    let running = shared.start_destination(source_id, destination, transform);
                    routes.push(running.route.clone());
                    match shared.destinations.insert(key, running) {
                        Some(old) => {
                            summary.changed += 1;
                            retire.push((old.addr, Some(routes[routes.len() - 1].recipient.clone())));
                        }
                        None => summary.added += 1,
                    }
                }
                let gone: Vec<(String, String)> = shared
                    .destinations
                    .keys()
                    .filter(|(source, id)| source == source_id && !wanted.iter().any(|d| d.id == *id))
                    .cloned()
                    .collect();
                for key in gone {
                    if let Some(old) = shared.destinations.remove(&key) {
                        summary.removed += 1;
                        retire.push((old.addr, None));
                    }
                }
                if routes.is_empty() {
                    routes.push(log_route());
                }
                plans.push((source_id.clone(), routes, retire));
            }
        }
        for (source_id, routes, retire) in plans {
            let Some(supervisor) = self.supervisors.get(&source_id) else {
                continue;
            };
            // The supervisor switches first, so nothing new reaches a retired actor;
            // what reached it before is ahead of `Retire` in its mailbox.
            supervisor
                .send(SetRoutes(routes))
                .await
                .map_err(|error| TopologyError(format!("source {source_id}: supervisor unavailable: {error}")))?;
            for (addr, forward_to) in retire {
                if let Err(error) = addr.send(Retire { forward_to }).await {
                    tracing::error!(%source_id, %error, "retired destination was already gone");
                }
            }
        }
        Ok(summary)
    }

    pub fn supervisor(&self, source_id: &str) -> Option<&Addr<SourceSupervisor>> {
        self.supervisors.get(source_id)
    }

    pub fn dead_letters(&self) -> &Recipient<DeadLetter> {
        &self.dead_letters
    }

    pub fn len(&self) -> usize {
        self.supervisors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.supervisors.is_empty()
    }
}
