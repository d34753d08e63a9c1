//! What the ops endpoints read: the parts this process runs.

use std::sync::Arc;

use switchyard_ingest::IngestState;
use switchyard_router::{ConsumerStats, Topology};

use crate::health::Readiness;

/// The running parts of this process, as the ops endpoints see them.
pub struct Ops {
    pub ingest: Option<Arc<IngestState>>,
    pub topology: Option<Topology>,
    pub consumer: Option<Arc<ConsumerStats>>,
    pub readiness: Arc<Readiness>,
    pub max_producer_queue: i32,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("ingest", &self.ingest.is_some())
            .field("router", &self.topology.is_some())
            .finish_non_exhaustive()
    }
}
