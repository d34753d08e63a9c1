//! From configuration to running actors: a supervisor per source, a destination actor
//! per (source, destination) spread over a pool of arbiters (threads), and the
//! dead-letter writer they share.

use std::collections::HashMap;

use actix::prelude::*;
use switchyard_actors::{
    DeadLetter, DedupSettings, DestinationActor, DestinationConfig, Load, LogDestination, Route, SourceSupervisor,
    Transform, TransformConfig,
};
use switchyard_schemas::config::SourceConfig;

/// A configuration the actors can't be built from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TopologyError(pub String);

/// The running supervisors, by source id.
#[derive(Debug, Clone)]
pub struct Topology {
    supervisors: HashMap<String, Addr<SourceSupervisor>>,
    dead_letters: Recipient<DeadLetter>,
}

impl Topology {
    /// Starts every actor. Must run inside an actix system. A source without any
    /// destination logs its events, so a first run shows them flowing.
    /// `source_transforms` holds each source's own transform chain, by source id.
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
        let mut compiled_destinations = HashMap::new();
        for destination in destinations {
            let transform = Transform::compile(&destination.transforms)
                .map_err(|error| TopologyError(format!("destinations {:?}: {error}", destination.id)))?;
            compiled_destinations.insert(destination.id.clone(), transform);
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let mut next = 0;
        let supervisors = sources
            .iter()
            .map(|source| {
                let mut routes: Vec<Route> = Vec::new();
                for destination in destinations.iter().filter(|d| d.sources.contains(&source.id)) {
                    let arbiter = &arbiters[next % arbiters.len()];
                    next += 1;
                    let load = Load::new(destination.max_buffered_events);
                    let (source_id, config, letters) = (source.id.clone(), destination.clone(), dead_letters.clone());
                    let actor_load = load.clone();
                    let transform = compiled_destinations.get(&destination.id).cloned().unwrap_or_default();
                    let addr = DestinationActor::start_in_arbiter(&arbiter.handle(), move |_| {
                        DestinationActor::new(&source_id, config, letters, actor_load).with_transform(transform)
                    });
                    routes.push(Route {
                        destination_id: destination.id.clone(),
                        recipient: addr.recipient(),
                        load,
                    });
                }
                if routes.is_empty() {
                    let recipient = LogDestination::default().start().recipient();
                    routes.push(Route {
                        destination_id: "log".into(),
                        recipient,
                        load: Load::new(usize::MAX),
                    });
                }
                let transform = compiled_sources.get(&source.id).cloned().unwrap_or_default();
                let supervisor = SourceSupervisor::new(&source.id, routes, dead_letters.clone(), dedup)
                    .with_transform(transform)
                    .start();
                (source.id.clone(), supervisor)
            })
            .collect();
        // Dropping an `Arbiter` handle leaves its thread running; the system stops it.
        drop(arbiters);
        Ok(Topology {
            supervisors,
            dead_letters,
        })
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
