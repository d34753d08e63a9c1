//! From configuration to running actors: one supervisor per source.

use std::collections::HashMap;

use actix::prelude::*;
use switchyard_actors::{LogDestination, SourceSupervisor};
use switchyard_schemas::config::SourceConfig;

/// The running supervisors, by source id.
#[derive(Debug, Default, Clone)]
pub struct Topology {
    supervisors: HashMap<String, Addr<SourceSupervisor>>,
}

impl Topology {
    /// Starts a supervisor per source, each fanning out to a log destination. Must run
    /// inside an actix system.
    pub fn start(sources: &[SourceConfig]) -> Self {
        let supervisors = sources
            .iter()
            .map(|source| {
                let log = LogDestination::default().start().recipient();
                (
                    source.id.clone(),
                    SourceSupervisor::new(&source.id, vec![log]).start(),
                )
            })
            .collect();
        Topology { supervisors }
    }

    pub fn supervisor(&self, source_id: &str) -> Option<&Addr<SourceSupervisor>> {
        self.supervisors.get(source_id)
    }

    pub fn len(&self) -> usize {
        self.supervisors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.supervisors.is_empty()
    }
}
