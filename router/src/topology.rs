//! From configuration to running actors: a supervisor per source, a destination actor
//! per (source, destination) spread over a pool of arbiters (threads), and the
//! dead-letter writer they share. [`Topology::reload`] applies a changed configuration
//! while running: only the actors of added, changed and removed sources and
//! destinations start, update or stop, and events buffered by a changed destination
//! move to its replacement.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use actix::prelude::*;
use futures::future::join_all;
use prometheus_client::metrics::histogram::Histogram;
use switchyard_actors::destination::{Retire, latency_histogram};
use switchyard_actors::{
    Budget, DeadLetter, DedupSettings, DestinationActor, DestinationConfig, EgressPolicy, LogDestination, Park, Route,
    Routed, SetRoutes, SetSuppression, SetTransform, SourceSupervisor, Suppression, Transform, TransformConfig,
};
use switchyard_actors::{DestinationStats, GetDestinationStats, GetStats, SupervisorHandle, SupervisorStats};
use switchyard_archive::actor::{ArchiveStats, GetArchiveStats};
use switchyard_archive::{ArchiveActor, ArchiveConfig, KeyRing};
use switchyard_config::SourceConfig;

pub use crate::plan::ReloadSummary;
use crate::plan::{Plan, Running, SourceChange, Target, diff};

/// How long an actor may take to report before it is listed as unresponsive.
pub const INSPECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One running actor, for `/actors` and metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActorReport {
    /// `source_supervisor`, `destination` or `archive`.
    pub kind: &'static str,
    pub source_id: String,
    pub destination_id: Option<String>,
    #[serde(flatten)]
    pub detail: Detail,
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum Detail {
    Source(SupervisorStats),
    Destination(DestinationStats),
    Archive(ArchiveStats),
    /// Didn't answer in time: its thread is blocked or it is gone.
    Unresponsive,
}

impl ActorReport {
    fn new(kind: &'static str, source_id: String, destination_id: Option<String>, detail: Detail) -> Self {
        ActorReport {
            kind,
            source_id,
            destination_id,
            detail,
        }
    }
}

/// Asks an actor for its stats within [`INSPECT_TIMEOUT`].
async fn ask<A, M>(addr: &Addr<A>, message: M, detail: impl FnOnce(M::Result) -> Detail) -> Detail
where
    A: Actor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    match actix::clock::timeout(INSPECT_TIMEOUT, addr.send(message)).await {
        Ok(Ok(stats)) => detail(stats),
        _ => Detail::Unresponsive,
    }
}

/// A configuration the actors can't be built from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TopologyError(pub String);

struct RunningDestination {
    config: Arc<DestinationConfig>,
    addr: Addr<DestinationActor>,
    route: Route,
    latency: Histogram,
}

struct RunningSource {
    transforms: Vec<TransformConfig>,
    addr: Addr<SourceSupervisor>,
}

/// An actor leaving: its buffered events go to `forward_to`, or are finished.
type Retiring = (Addr<DestinationActor>, Option<Recipient<Routed>>);

/// Changes for a supervisor that keeps running, sent once the plan is made.
struct Update {
    source_id: String,
    addr: Addr<SourceSupervisor>,
    routes: Vec<Route>,
    transform: Option<Transform>,
    retire: Vec<Retiring>,
}

struct Shared {
    arbiters: Vec<ArbiterHandle>,
    next: usize,
    dead_letters: Recipient<DeadLetter>,
    parking: Option<Recipient<Park>>,
    dedup: DedupSettings,
    egress: Arc<EgressPolicy>,
    archive: Option<ArchiveSetup>,
    /// Each source's archive actor, by source id, kept across reloads.
    archives: HashMap<String, (Route, Addr<ArchiveActor>)>,
    /// The suppression lists last read from the archive, by source id.
    suppressed: HashMap<String, Arc<Suppression>>,
    sources: HashMap<String, RunningSource>,
    /// By (source id, destination id); ordered, so a source's destinations are one range.
    destinations: BTreeMap<(String, String), RunningDestination>,
    /// Each destination's settings as its actors hold them, by destination id: without
    /// its source list (an actor of one source needs no list of ten thousand) and kept
    /// across reloads while unchanged, so a running actor's settings are compared by
    /// pointer.
    configs: HashMap<String, Arc<DestinationConfig>>,
}

/// Where the sources' archive actors write, when the archive is on.
#[derive(Debug)]
pub struct ArchiveSetup {
    pub config: ArchiveConfig,
    /// The sources' keys, and through them the primary store and the replica.
    pub keys: Arc<KeyRing>,
}

impl Shared {
    /// The source's archive route: its running archive actor, or a new one.
    fn archive_route(&mut self, source_id: &str) -> Result<Option<Route>, TopologyError> {
        let Some(setup) = &self.archive else {
            return Ok(None);
        };
        if let Some((route, _)) = self.archives.get(source_id) {
            return Ok(Some(route.clone()));
        }
        let arbiter = &self.arbiters[self.next % self.arbiters.len()];
        self.next += 1;
        let budget = ArchiveActor::budget();
        let (source, config, store, replica, keys) = (
            source_id.to_string(),
            setup.config.clone(),
            setup.keys.primary().clone(),
            setup.keys.replica().cloned(),
            setup.keys.clone(),
        );
        let addr = ArchiveActor::start_in_arbiter(arbiter, move |_| {
            ArchiveActor::new(&source, &config, store, keys).with_replica(replica)
        });
        let route = Route {
            destination_id: "archive".into(),
            recipient: addr.clone().recipient(),
            budget,
        };
        self.archives.insert(source_id.to_string(), (route.clone(), addr));
        Ok(Some(route))
    }

    fn start_destination(
        &mut self,
        source_id: &str,
        config: &Arc<DestinationConfig>,
        transform: Transform,
    ) -> RunningDestination {
        let arbiter = &self.arbiters[self.next % self.arbiters.len()];
        self.next += 1;
        // A destination that parks makes room when it is failing; a slow one paces its source.
        let parks = DestinationActor::parks(config, self.parking.is_some());
        let budget = Budget::new(config.max_buffered_events);
        let (source, actor_config, letters, actor_budget, parking, egress) = (
            source_id.to_string(),
            Arc::clone(config),
            self.dead_letters.clone(),
            budget.clone(),
            self.parking.clone().filter(|_| parks),
            self.egress.clone(),
        );
        let latency = latency_histogram();
        let actor_latency = latency.clone();
        let addr = DestinationActor::start_in_arbiter(arbiter, move |_| {
            let actor = DestinationActor::new(&source, actor_config, letters, actor_budget, egress)
                .with_transform(transform)
                .with_latency(actor_latency);
            match parking {
                Some(parking) => actor.with_parking(parking),
                None => actor,
            }
        });
        let route = Route {
            destination_id: config.id.clone(),
            recipient: addr.clone().recipient(),
            budget,
        };
        RunningDestination {
            config: Arc::clone(config),
            addr,
            route,
            latency,
        }
    }

    /// The settings each destination's actors get, by destination id, in configuration
    /// order: the running ones where unchanged (see [`Shared::configs`]).
    fn actor_configs(&mut self, destinations: &[DestinationConfig]) -> Vec<Arc<DestinationConfig>> {
        let configs: Vec<Arc<DestinationConfig>> = destinations
            .iter()
            .map(|destination| {
                let wanted = DestinationConfig {
                    sources: Vec::new(),
                    ..destination.clone()
                };
                match self.configs.get(&destination.id) {
                    Some(running) if **running == wanted => Arc::clone(running),
                    _ => Arc::new(wanted),
                }
            })
            .collect();
        self.configs = configs.iter().map(|c| (c.id.clone(), Arc::clone(c))).collect();
        configs
    }

    /// Carries out one source's part of a plan: its routes (kept actors, new ones
    /// started), and the actors that retire (a replaced one forwards its events to its
    /// replacement).
    fn apply_targets(&mut self, change: &SourceChange, compiled: &Compiled) -> (Vec<Route>, Vec<Retiring>) {
        let source_id = change.source_id.as_str();
        let mut routes = Vec::with_capacity(change.targets.len() + 1);
        let mut retire = Vec::new();
        for target in &change.targets {
            let config = match target {
                Target::Keep(id) => {
                    if let Some(running) = self.destinations.get(&(source_id.to_string(), id.clone())) {
                        routes.push(running.route.clone());
                    }
                    continue;
                }
                Target::Start(config) | Target::Replace(config) => config,
            };
            let transform = compiled.get(&config.id).cloned().unwrap_or_default();
            let running = self.start_destination(source_id, config, transform);
            let recipient = running.addr.clone().recipient();
            routes.push(running.route.clone());
            if let Some(old) = self
                .destinations
                .insert((source_id.to_string(), config.id.clone()), running)
            {
                retire.push((old.addr, Some(recipient)));
            }
        }
        for id in &change.retire {
            if let Some(old) = self.destinations.remove(&(source_id.to_string(), id.clone())) {
                retire.push((old.addr, None));
            }
        }
        if routes.is_empty() {
            routes.push(log_route());
        }
        (routes, retire)
    }
}

impl Running for Shared {
    fn source(&self, source_id: &str) -> Option<&[TransformConfig]> {
        self.sources.get(source_id).map(|running| running.transforms.as_slice())
    }

    fn source_ids(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    fn destination(&self, source_id: &str, destination_id: &str) -> Option<&Arc<DestinationConfig>> {
        self.destinations
            .get(&(source_id.to_string(), destination_id.to_string()))
            .map(|running| &running.config)
    }

    fn destinations_of(&self, source_id: &str) -> Vec<String> {
        self.destinations
            .range((source_id.to_string(), String::new())..)
            .map(|(key, _)| key)
            .take_while(|(source, _)| source == source_id)
            .map(|(_, id)| id.clone())
            .collect()
    }
}

/// The running supervisors, by source id, and the destinations behind them.
#[derive(Clone)]
pub struct Topology {
    /// Read on every record; written only by a reload. Each handle carries the
    /// supervisor's budget, which the consumer takes room from before handing over.
    supervisors: Arc<RwLock<HashMap<String, Arc<SupervisorHandle>>>>,
    dead_letters: Recipient<DeadLetter>,
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("sources", &self.len())
            .finish_non_exhaustive()
    }
}

/// Compiled transform chains, by source or destination id.
type Compiled = HashMap<String, Transform>;

fn compile_all(
    source_transforms: &HashMap<String, Vec<TransformConfig>>,
    destinations: &[DestinationConfig],
) -> Result<(Compiled, Compiled), TopologyError> {
    let mut sources = HashMap::new();
    for (source_id, configs) in source_transforms {
        let transform =
            Transform::compile(configs).map_err(|error| TopologyError(format!("sources {source_id:?}: {error}")))?;
        sources.insert(source_id.clone(), transform);
    }
    let mut compiled = HashMap::new();
    for destination in destinations {
        let transform = Transform::compile(&destination.transforms)
            .map_err(|error| TopologyError(format!("destinations {:?}: {error}", destination.id)))?;
        compiled.insert(destination.id.clone(), transform);
    }
    Ok((sources, compiled))
}

/// A source with no destination logs its events, so a first run shows them flowing.
fn log_route() -> Route {
    Route {
        destination_id: "log".into(),
        recipient: LogDestination::default().start().recipient(),
        budget: Budget::unbounded(),
    }
}

/// How the topology runs, beside what it runs.
#[derive(Debug, Default)]
pub struct TopologyOptions {
    /// The retry topic's writer: with it, a full destination parks its overflow there
    /// instead of holding back its source.
    pub parking: Option<Recipient<Park>>,
    pub archive: Option<ArchiveSetup>,
    pub dedup: DedupSettings,
    /// The operator's `[egress]`: where every destination's client may connect.
    pub egress: Arc<EgressPolicy>,
}

impl Topology {
    /// Starts every actor. Must run inside an actix system. `source_transforms` holds
    /// each source's own transform chain, by source id.
    pub fn start(
        sources: &[SourceConfig],
        source_transforms: &HashMap<String, Vec<TransformConfig>>,
        destinations: &[DestinationConfig],
        dead_letters: Recipient<DeadLetter>,
        options: TopologyOptions,
    ) -> Result<Self, TopologyError> {
        let TopologyOptions {
            parking,
            archive,
            dedup,
            egress,
        } = options;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        // The arbiters' threads live as long as the system; the handles start actors on them.
        let arbiters = (0..threads).map(|_| Arbiter::new().handle()).collect();
        let topology = Topology {
            supervisors: Arc::default(),
            dead_letters: dead_letters.clone(),
            shared: Arc::new(Mutex::new(Shared {
                arbiters,
                next: 0,
                dead_letters,
                parking,
                dedup,
                egress,
                archive,
                archives: HashMap::new(),
                suppressed: HashMap::new(),
                sources: HashMap::new(),
                destinations: BTreeMap::new(),
                configs: HashMap::new(),
            })),
        };
        let (updates, _) = topology.plan(sources, source_transforms, destinations)?;
        debug_assert!(updates.is_empty(), "nothing runs before the start");
        Ok(topology)
    }

    /// Applies a new configuration: starts added sources and destinations, updates a
    /// kept source's transforms and destination list, replaces changed destinations
    /// (their buffered events move to the replacement), retires removed ones (their
    /// buffered events are finished: no longer wanted) and stops removed sources
    /// (records of a removed source still in Kafka go to the dead-letter topic as
    /// unroutable). Everything else keeps running untouched. Nothing changes if a
    /// transform doesn't compile.
    pub async fn reload(
        &self,
        sources: &[SourceConfig],
        source_transforms: &HashMap<String, Vec<TransformConfig>>,
        destinations: &[DestinationConfig],
    ) -> Result<ReloadSummary, TopologyError> {
        let (updates, summary) = self.plan(sources, source_transforms, destinations)?;
        for update in updates {
            let Update {
                source_id,
                addr,
                routes,
                transform,
                retire,
            } = update;
            let unavailable =
                |error: MailboxError| TopologyError(format!("source {source_id}: supervisor unavailable: {error}"));
            // The supervisor switches first, so nothing new reaches a retired actor;
            // what reached it before is ahead of `Retire` in its mailbox.
            if let Some(transform) = transform {
                addr.send(SetTransform(transform)).await.map_err(unavailable)?;
            }
            addr.send(SetRoutes(routes)).await.map_err(unavailable)?;
            for (actor, forward_to) in retire {
                if let Err(error) = actor.send(Retire { forward_to }).await {
                    tracing::error!(%source_id, %error, "retired destination was already gone");
                }
            }
        }
        Ok(summary)
    }

    /// Compiles, works out the plan ([`diff`]) and carries it out ([`Topology::apply`]).
    fn plan(
        &self,
        sources: &[SourceConfig],
        source_transforms: &HashMap<String, Vec<TransformConfig>>,
        destinations: &[DestinationConfig],
    ) -> Result<(Vec<Update>, ReloadSummary), TopologyError> {
        let (compiled_sources, compiled_destinations) = compile_all(source_transforms, destinations)?;
        let mut shared = self.shared();
        let configs = shared.actor_configs(destinations);
        let plan = diff(&*shared, sources, source_transforms, destinations, &configs);
        let summary = plan.summary.clone();
        let updates = self.apply(&mut shared, plan, &compiled_sources, &compiled_destinations)?;
        Ok((updates, summary))
    }

    /// Starts what the plan starts and edits the routing table; returns what running
    /// supervisors must be told (sent by [`Topology::reload`] once the locks are released).
    /// Removed sources leave the routing table here.
    fn apply(
        &self,
        shared: &mut Shared,
        plan: Plan,
        compiled_sources: &Compiled,
        compiled_destinations: &Compiled,
    ) -> Result<Vec<Update>, TopologyError> {
        let mut supervisors = self
            .supervisors
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut updates = Vec::new();
        for change in plan.sources {
            let (mut routes, retire) = shared.apply_targets(&change, compiled_destinations);
            // The archive is one more target of every source, beside its destinations.
            routes.extend(shared.archive_route(&change.source_id)?);
            let transform = change
                .transforms
                .as_ref()
                .map(|_| compiled_sources.get(&change.source_id).cloned().unwrap_or_default());
            if change.start {
                let budget = Budget::new(switchyard_actors::SOURCE_BUDGET);
                let suppression = shared.suppressed.get(&change.source_id).cloned().unwrap_or_default();
                let addr = SourceSupervisor::new(&change.source_id, routes, shared.dead_letters.clone(), shared.dedup)
                    .with_budget(budget.clone())
                    .with_transform(transform.unwrap_or_default())
                    .with_suppression(suppression)
                    .start();
                let handle = SupervisorHandle {
                    recipient: addr.clone().recipient(),
                    budget,
                };
                supervisors.insert(change.source_id.clone(), Arc::new(handle));
                let transforms = change.transforms.unwrap_or_default();
                shared
                    .sources
                    .insert(change.source_id, RunningSource { transforms, addr });
            } else if let Some(running) = shared.sources.get_mut(&change.source_id) {
                if let Some(transforms) = change.transforms {
                    running.transforms = transforms;
                }
                updates.push(Update {
                    source_id: change.source_id,
                    addr: running.addr.clone(),
                    routes,
                    transform,
                    retire,
                });
            }
        }
        for (source_id, destinations) in plan.removed {
            supervisors.remove(&source_id);
            shared.archives.remove(&source_id);
            let retire = destinations
                .into_iter()
                .filter_map(|id| shared.destinations.remove(&(source_id.clone(), id)))
                .map(|old| (old.addr, None))
                .collect();
            if let Some(running) = shared.sources.remove(&source_id) {
                // No routes left: what the supervisor still holds finishes as not wanted.
                updates.push(Update {
                    source_id,
                    addr: running.addr,
                    routes: Vec::new(),
                    transform: None,
                    retire,
                });
            }
        }
        Ok(updates)
    }

    /// The state behind the routing table; a panic elsewhere while holding it leaves
    /// nothing half-done that matters here, so a poisoned lock is taken as it is.
    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the suppression lists from the archive's primary store and hands each
    /// source whose list changed to its supervisor (which drops the users' new events)
    /// and its archive actor (which drops what it still buffers). Returns how many
    /// sources changed; without an archive, none.
    pub async fn refresh_suppression(&self) -> Result<usize, TopologyError> {
        let Some((store, prefix)) = ({
            let shared = self.shared();
            shared
                .archive
                .as_ref()
                .map(|setup| (setup.keys.primary().clone(), setup.config.prefix.clone()))
        }) else {
            return Ok(0);
        };
        let lists = switchyard_archive::delete::suppression_lists(store.as_ref(), &prefix)
            .await
            .map_err(|error| TopologyError(error.to_string()))?;
        let mut sends = Vec::new();
        {
            let mut shared = self.shared();
            let mut ids: Vec<String> = lists.keys().chain(shared.suppressed.keys()).cloned().collect();
            ids.sort();
            ids.dedup();
            for source_id in ids {
                let list = Arc::new(lists.get(&source_id).cloned().unwrap_or_default());
                if shared.suppressed.get(&source_id).is_some_and(|old| *old == list) {
                    continue;
                }
                let supervisor = shared.sources.get(&source_id).map(|running| running.addr.clone());
                let archive = shared.archives.get(&source_id).map(|(_, addr)| addr.clone());
                sends.push((source_id.clone(), list.clone(), supervisor, archive));
                shared.suppressed.insert(source_id, list);
            }
        }
        let changed = sends.len();
        for (source_id, list, supervisor, archive) in sends {
            tracing::info!(%source_id, users = list.len(), "suppression list changed");
            if let Some(addr) = supervisor {
                addr.do_send(SetSuppression(list.clone()));
            }
            if let Some(addr) = archive {
                addr.do_send(SetSuppression(list));
            }
        }
        Ok(changed)
    }

    /// Asks every archive actor to write what it buffers now (a clean stop).
    pub fn write_archives_now(&self) {
        let shared = self.shared();
        for (_, addr) in shared.archives.values() {
            addr.do_send(switchyard_archive::actor::WriteNow);
        }
    }

    /// How often [`Topology::refresh_suppression`] should run, when the archive is on.
    pub fn suppression_refresh(&self) -> Option<std::time::Duration> {
        let shared = self.shared();
        shared.archive.as_ref().map(|setup| setup.config.suppression_refresh())
    }

    pub fn supervisor(&self, source_id: &str) -> Option<Arc<SupervisorHandle>> {
        self.supervisors
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(source_id)
            .cloned()
    }

    /// The running actor of one destination of one source.
    pub fn destination(&self, source_id: &str, destination_id: &str) -> Option<(Recipient<Routed>, Budget)> {
        let shared = self.shared();
        shared
            .destinations
            .get(&(source_id.to_string(), destination_id.to_string()))
            .map(|running| (running.addr.clone().recipient(), running.route.budget.clone()))
    }

    /// Every running actor with its counters and state. An actor that doesn't answer
    /// within [`INSPECT_TIMEOUT`] is listed as unresponsive.
    pub async fn inspect(&self) -> Vec<ActorReport> {
        let (sources, destinations, archives) = {
            let shared = self.shared();
            let sources: Vec<(String, Addr<SourceSupervisor>)> = shared
                .sources
                .iter()
                .map(|(id, running)| (id.clone(), running.addr.clone()))
                .collect();
            let destinations: Vec<((String, String), Addr<DestinationActor>)> = shared
                .destinations
                .iter()
                .map(|(key, running)| (key.clone(), running.addr.clone()))
                .collect();
            let archives: Vec<(String, Addr<ArchiveActor>)> = shared
                .archives
                .iter()
                .map(|(id, (_, addr))| (id.clone(), addr.clone()))
                .collect();
            (sources, destinations, archives)
        };
        // All asked at once: an unresponsive actor costs one timeout, not one each.
        let sources = sources.into_iter().map(|(source_id, addr)| async move {
            let detail = ask(&addr, GetStats, Detail::Source).await;
            ActorReport::new("source_supervisor", source_id, None, detail)
        });
        let destinations = destinations
            .into_iter()
            .map(|((source_id, destination_id), addr)| async move {
                let detail = ask(&addr, GetDestinationStats, Detail::Destination).await;
                ActorReport::new("destination", source_id, Some(destination_id), detail)
            });
        let archives = archives.into_iter().map(|(source_id, addr)| async move {
            let detail = ask(&addr, GetArchiveStats, Detail::Archive).await;
            ActorReport::new("archive", source_id, None, detail)
        });
        let mut reports = join_all(sources).await;
        reports.extend(join_all(destinations).await);
        reports.extend(join_all(archives).await);
        reports.sort_by(|a, b| (&a.source_id, &a.destination_id).cmp(&(&b.source_id, &b.destination_id)));
        reports
    }

    /// Each destination's delivery latency histogram, by (source id, destination id).
    pub fn latencies(&self) -> Vec<(String, String, Histogram)> {
        let shared = self.shared();
        let mut out: Vec<(String, String, Histogram)> = shared
            .destinations
            .iter()
            .map(|((source, destination), running)| (source.clone(), destination.clone(), running.latency.clone()))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    pub fn dead_letters(&self) -> &Recipient<DeadLetter> {
        &self.dead_letters
    }

    pub fn len(&self) -> usize {
        self.supervisors
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Discard;

    impl Actor for Discard {
        type Context = Context<Self>;
    }

    impl Handler<DeadLetter> for Discard {
        type Result = ();
        fn handle(&mut self, letter: DeadLetter, _: &mut Self::Context) {
            letter.ack.done();
        }
    }

    fn source(id: &str) -> SourceConfig {
        serde_json::from_value(json!({"id": id, "write_key": format!("{id}-write-key-0123456789")})).expect("source")
    }

    fn blackhole(id: &str, sources: &[&str], concurrency: usize) -> DestinationConfig {
        serde_json::from_value(json!({"id": id, "sources": sources, "kind": "blackhole", "concurrency": concurrency}))
            .expect("destination")
    }

    fn start(sources: &[SourceConfig], destinations: &[DestinationConfig]) -> Topology {
        Topology::start(
            sources,
            &HashMap::new(),
            destinations,
            Discard.start().recipient(),
            TopologyOptions::default(),
        )
        .expect("topology")
    }

    /// The (source, destination) pairs with running actors, and whether every actor of
    /// each destination holds one shared copy of its settings, without the source list.
    fn running(topology: &Topology) -> (Vec<(String, String)>, bool) {
        let shared = topology.shared.lock().expect("not poisoned");
        let pairs = shared.destinations.keys().cloned().collect();
        let shared_configs = shared.destinations.iter().all(|((_, id), running)| {
            running.config.sources.is_empty() && Arc::ptr_eq(&running.config, &shared.configs[id])
        });
        (pairs, shared_configs)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(s, d)| (s.to_string(), d.to_string())).collect()
    }

    #[actix_rt::test]
    async fn a_source_added_to_a_destination_starts_one_actor_and_leaves_the_others_running() {
        let sources = [source("a"), source("b"), source("c")];
        // "a" listed twice still gets one actor.
        let topology = start(&sources, &[blackhole("d", &["a", "b", "a"], 4)]);
        assert_eq!(running(&topology), (pairs(&[("a", "d"), ("b", "d")]), true));

        let summary = topology
            .reload(&sources, &HashMap::new(), &[blackhole("d", &["a", "b", "c"], 4)])
            .await
            .expect("reload");
        assert_eq!(
            (summary.added, summary.unchanged, summary.changed, summary.removed),
            (1, 2, 0, 0)
        );
        assert_eq!(running(&topology), (pairs(&[("a", "d"), ("b", "d"), ("c", "d")]), true));
    }

    #[actix_rt::test]
    async fn changed_settings_replace_every_actor_of_the_destination_and_a_dropped_source_retires_its_own() {
        let sources = [source("a"), source("b")];
        let topology = start(&sources, &[blackhole("d", &["a", "b"], 4), blackhole("e", &["a"], 4)]);

        let summary = topology
            .reload(
                &sources,
                &HashMap::new(),
                &[blackhole("d", &["a"], 8), blackhole("e", &["a"], 4)],
            )
            .await
            .expect("reload");
        assert_eq!(
            (summary.added, summary.unchanged, summary.changed, summary.removed),
            (0, 1, 1, 1)
        );
        assert_eq!(running(&topology), (pairs(&[("a", "d"), ("a", "e")]), true));

        // A removed source takes its actors with it.
        let summary = topology
            .reload(&sources[1..], &HashMap::new(), &[blackhole("d", &["b"], 8)])
            .await
            .expect("reload");
        assert_eq!((summary.sources_removed, summary.added, summary.removed), (1, 1, 2));
        assert_eq!(running(&topology), (pairs(&[("b", "d")]), true));
    }
}
