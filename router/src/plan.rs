//! What a reload changes, worked out from what runs and what is wanted, with no actor
//! involved: [`diff`] is pure, so the rules (which actors start, stay, are replaced or
//! retire) are tested on their own, and `topology.rs` only carries a plan out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use switchyard_actors::{DestinationConfig, TransformConfig};
use switchyard_config::SourceConfig;

/// What runs now, as the diff sees it.
pub trait Running {
    /// The transforms of a running source's supervisor; `None` when it isn't running.
    fn source(&self, source_id: &str) -> Option<&[TransformConfig]>;
    /// Every running source.
    fn source_ids(&self) -> Vec<String>;
    /// The settings a running (source, destination) actor holds.
    fn destination(&self, source_id: &str, destination_id: &str) -> Option<&Arc<DestinationConfig>>;
    /// The destinations a running source has actors for.
    fn destinations_of(&self, source_id: &str) -> Vec<String>;
}

/// What a reload changed. Destinations count once per source they serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub sources_added: usize,
    pub sources_changed: usize,
    pub sources_removed: usize,
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

/// One of a source's destinations after the reload, in configuration order.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Its running actor stays.
    Keep(String),
    /// A new actor with these settings.
    Start(Arc<DestinationConfig>),
    /// A new actor with these settings; the running one hands it its events and retires.
    Replace(Arc<DestinationConfig>),
}

/// A source that runs after the reload.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceChange {
    pub source_id: String,
    /// Its supervisor is to be started.
    pub start: bool,
    /// Its transforms, when new or changed.
    pub transforms: Option<Vec<TransformConfig>>,
    pub targets: Vec<Target>,
    /// Its destinations no longer wanted: they retire, their events finished.
    pub retire: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// In configuration order.
    pub sources: Vec<SourceChange>,
    /// Sources to stop, with every destination actor of theirs.
    pub removed: Vec<(String, Vec<String>)>,
    pub summary: ReloadSummary,
}

/// The plan from what runs to what is wanted. `configs` are the destinations' actor
/// settings (see `Shared::actor_configs`), in the order of `destinations`, whose source
/// lists they leave out.
pub fn diff(
    running: &impl Running,
    sources: &[SourceConfig],
    source_transforms: &HashMap<String, Vec<TransformConfig>>,
    destinations: &[DestinationConfig],
    configs: &[Arc<DestinationConfig>],
) -> Plan {
    let mut plan = Plan::default();
    // Each source's destinations, in configuration order: one pass over the lists,
    // not one per source.
    let mut wanted_by_source: HashMap<&str, Vec<&Arc<DestinationConfig>>> = HashMap::new();
    for (destination, config) in destinations.iter().zip(configs) {
        for source_id in &destination.sources {
            let wanted = wanted_by_source.entry(source_id.as_str()).or_default();
            // A source listed twice still gets one actor.
            if !wanted.last().is_some_and(|last| Arc::ptr_eq(last, config)) {
                wanted.push(config);
            }
        }
    }
    for source in sources {
        let wanted = wanted_by_source.get(source.id.as_str()).map_or(&[][..], Vec::as_slice);
        let change = diff_source(running, source, source_transforms, wanted, &mut plan.summary);
        plan.sources.push(change);
    }
    let kept: HashSet<&str> = sources.iter().map(|s| s.id.as_str()).collect();
    let mut gone: Vec<String> = running
        .source_ids()
        .into_iter()
        .filter(|id| !kept.contains(id.as_str()))
        .collect();
    gone.sort();
    for source_id in gone {
        plan.summary.sources_removed += 1;
        let destinations = running.destinations_of(&source_id);
        plan.summary.removed += destinations.len();
        plan.removed.push((source_id, destinations));
    }
    plan
}

fn diff_source(
    running: &impl Running,
    source: &SourceConfig,
    source_transforms: &HashMap<String, Vec<TransformConfig>>,
    wanted: &[&Arc<DestinationConfig>],
    summary: &mut ReloadSummary,
) -> SourceChange {
    let transforms = source_transforms.get(&source.id).cloned().unwrap_or_default();
    let (start, transforms) = match running.source(&source.id) {
        None => {
            summary.sources_added += 1;
            (true, Some(transforms))
        }
        Some(current) if current != transforms.as_slice() => {
            summary.sources_changed += 1;
            (false, Some(transforms))
        }
        Some(_) => (false, None),
    };
    let mut targets = Vec::with_capacity(wanted.len());
    for destination in wanted {
        match running.destination(&source.id, &destination.id) {
            Some(current) if Arc::ptr_eq(current, destination) || current == *destination => {
                summary.unchanged += 1;
                targets.push(Target::Keep(destination.id.clone()));
            }
            Some(_) => {
                summary.changed += 1;
                targets.push(Target::Replace(Arc::clone(destination)));
            }
            None => {
                summary.added += 1;
                targets.push(Target::Start(Arc::clone(destination)));
            }
        }
    }
    let retire: Vec<String> = running
        .destinations_of(&source.id)
        .into_iter()
        .filter(|id| !wanted.iter().any(|d| d.id == *id))
        .collect();
    summary.removed += retire.len();
    SourceChange {
        source_id: source.id.clone(),
        start,
        transforms,
        targets,
        retire,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[derive(Default)]
    struct Now {
        sources: BTreeMap<String, Vec<TransformConfig>>,
        destinations: BTreeMap<(String, String), Arc<DestinationConfig>>,
    }

    impl Running for Now {
        fn source(&self, source_id: &str) -> Option<&[TransformConfig]> {
            self.sources.get(source_id).map(Vec::as_slice)
        }
        fn source_ids(&self) -> Vec<String> {
            self.sources.keys().cloned().collect()
        }
        fn destination(&self, source_id: &str, destination_id: &str) -> Option<&Arc<DestinationConfig>> {
            self.destinations
                .get(&(source_id.to_string(), destination_id.to_string()))
        }
        fn destinations_of(&self, source_id: &str) -> Vec<String> {
            self.destinations
                .keys()
                .filter(|(source, _)| source == source_id)
                .map(|(_, id)| id.clone())
                .collect()
        }
    }

    fn source(id: &str) -> SourceConfig {
        serde_json::from_value(json!({"id": id, "write_key": format!("{id}-write-key-0123456789")})).expect("source")
    }

    fn blackhole(id: &str, sources: &[&str], concurrency: usize) -> DestinationConfig {
        serde_json::from_value(json!({"id": id, "sources": sources, "kind": "blackhole", "concurrency": concurrency}))
            .expect("destination")
    }

    /// Actor settings as the topology makes them: without the source list.
    fn configs(destinations: &[DestinationConfig]) -> Vec<Arc<DestinationConfig>> {
        destinations
            .iter()
            .map(|d| {
                Arc::new(DestinationConfig {
                    sources: Vec::new(),
                    ..d.clone()
                })
            })
            .collect()
    }

    /// What runs once `plan` is carried out on `now`.
    fn carry_out(now: &mut Now, plan: &Plan) {
        for change in &plan.sources {
            if let Some(transforms) = &change.transforms {
                now.sources.insert(change.source_id.clone(), transforms.clone());
            }
            now.sources.entry(change.source_id.clone()).or_default();
            for target in &change.targets {
                if let Target::Start(config) | Target::Replace(config) = target {
                    now.destinations
                        .insert((change.source_id.clone(), config.id.clone()), config.clone());
                }
            }
            for id in &change.retire {
                now.destinations.remove(&(change.source_id.clone(), id.clone()));
            }
        }
        for (source_id, ids) in &plan.removed {
            now.sources.remove(source_id);
            for id in ids {
                now.destinations.remove(&(source_id.clone(), id.clone()));
            }
        }
    }

    #[test]
    fn a_first_plan_starts_everything_once() {
        let sources = [source("a"), source("b")];
        let destinations = [blackhole("d", &["a", "b", "a"], 4), blackhole("e", &["b"], 4)];
        let configs = configs(&destinations);
        let plan = diff(&Now::default(), &sources, &HashMap::new(), &destinations, &configs);
        assert_eq!(
            plan.summary,
            ReloadSummary {
                sources_added: 2,
                added: 3,
                ..ReloadSummary::default()
            }
        );
        assert_eq!(
            plan.sources[0].targets,
            vec![Target::Start(configs[0].clone())],
            "a listed twice: once"
        );
        assert_eq!(
            plan.sources[1].targets,
            vec![Target::Start(configs[0].clone()), Target::Start(configs[1].clone())],
            "in configuration order"
        );
        assert!(plan.sources.iter().all(|s| s.start && s.transforms == Some(Vec::new())));
    }

    #[test]
    fn only_what_changed_starts_is_replaced_or_retires() {
        let sources = [source("a"), source("b"), source("c")];
        let before = [blackhole("d", &["a", "b"], 4), blackhole("e", &["a", "c"], 4)];
        let before_configs = configs(&before);
        let mut now = Now::default();
        let first = diff(&now, &sources, &HashMap::new(), &before, &before_configs);
        carry_out(&mut now, &first);

        // d gains c and changes its settings; e leaves c; b is removed; a gets a transform.
        let after = [blackhole("d", &["a", "c"], 8), blackhole("e", &["a"], 4)];
        let mut after_configs = configs(&after);
        after_configs[1] = before_configs[1].clone();
        let drop_heartbeats: Vec<TransformConfig> =
            serde_json::from_value(json!([{"op": "drop_if", "condition": ".event == \"Heartbeat\""}]))
                .expect("transform");
        let transforms = HashMap::from([("a".to_string(), drop_heartbeats.clone())]);
        let kept = [source("a"), source("c")];
        let plan = diff(&now, &kept, &transforms, &after, &after_configs);
        assert_eq!(
            plan.summary,
            ReloadSummary {
                sources_changed: 1,
                sources_removed: 1,
                added: 1,
                changed: 1,
                removed: 2,
                unchanged: 1,
                ..ReloadSummary::default()
            }
        );
        let a = &plan.sources[0];
        assert_eq!((a.start, a.transforms.clone()), (false, Some(drop_heartbeats)));
        assert_eq!(
            a.targets,
            vec![Target::Replace(after_configs[0].clone()), Target::Keep("e".into())]
        );
        let c = &plan.sources[1];
        assert_eq!((c.start, c.transforms.clone()), (false, None), "c is unchanged itself");
        assert_eq!(c.targets, vec![Target::Start(after_configs[0].clone())]);
        assert_eq!(c.retire, vec!["e".to_string()], "e no longer serves c");
        assert_eq!(plan.removed, vec![("b".to_string(), vec!["d".to_string()])]);

        // Carried out, the same configuration again changes nothing.
        carry_out(&mut now, &plan);
        let again = diff(&now, &kept, &transforms, &after, &after_configs);
        assert_eq!(
            again.summary,
            ReloadSummary {
                unchanged: 3,
                ..ReloadSummary::default()
            }
        );
        assert!(again.removed.is_empty() && again.sources.iter().all(|s| !s.start && s.transforms.is_none()));
    }
}
