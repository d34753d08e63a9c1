//! `/overview`: delivery per source and destination, what an operator asks first ("is
//! my data getting there, and if not, why?").

use serde::Serialize;
use switchyard_actors::RecentErrors;
use switchyard_actors::destination::ActorState;
use switchyard_archive::actor::ArchiveStats;
use switchyard_router::{ActorReport, Detail};

#[derive(Debug, Default, Serialize)]
pub struct Overview {
    pub sources: Vec<SourceOverview>,
}

#[derive(Debug, Default, Serialize)]
pub struct SourceOverview {
    pub id: String,
    /// False when its supervisor didn't answer in time.
    pub responsive: bool,
    pub received: u64,
    /// Handed on to its destinations.
    pub routed: u64,
    pub duplicates: u64,
    /// Dropped as events of deleted users.
    pub suppressed: u64,
    pub filtered: u64,
    pub rejected: u64,
    pub recent_errors: RecentErrors,
    pub destinations: Vec<DestinationOverview>,
    /// The source's archive, when the archive is on.
    pub archive: Option<ArchiveStats>,
}

#[derive(Debug, Serialize)]
pub struct DestinationOverview {
    pub id: String,
    /// `None` when the actor didn't answer in time.
    pub state: Option<ActorState>,
    pub received: u64,
    pub delivered: u64,
    pub filtered: u64,
    /// Held now: waiting to be sent, in flight, or waiting to retry.
    pub retrying: usize,
    pub dead_lettered: u64,
    pub parked: u64,
    pub recent_errors: RecentErrors,
}

/// Groups actor reports (as [`switchyard_router::Topology::inspect`] returns them) by source.
pub fn overview(reports: Vec<ActorReport>) -> Overview {
    let mut out = Overview::default();
    for report in reports {
        let position = match out.sources.iter().position(|s| s.id == report.source_id) {
            Some(position) => position,
            None => {
                out.sources.push(SourceOverview {
                    id: report.source_id.clone(),
                    ..SourceOverview::default()
                });
                out.sources.len() - 1
            }
        };
        let source = &mut out.sources[position];
        match (report.destination_id, report.detail) {
            (None, Detail::Source(stats)) => {
                source.responsive = true;
                source.received = stats.received;
                source.routed = stats.delivered;
                source.duplicates = stats.duplicates;
                source.suppressed = stats.suppressed;
                source.filtered = stats.filtered;
                source.rejected = stats.rejected;
                source.recent_errors = stats.recent_errors;
            }
            (_, Detail::Archive(stats)) => source.archive = Some(stats),
            (Some(id), Detail::Destination(stats)) => source.destinations.push(DestinationOverview {
                id,
                state: Some(stats.state),
                received: stats.received,
                delivered: stats.delivered,
                filtered: stats.filtered,
                retrying: stats.buffered,
                dead_lettered: stats.dead_lettered,
                parked: stats.parked,
                recent_errors: stats.recent_errors,
            }),
            (Some(id), _) => source.destinations.push(DestinationOverview {
                id,
                state: None,
                received: 0,
                delivered: 0,
                filtered: 0,
                retrying: 0,
                dead_lettered: 0,
                parked: 0,
                recent_errors: RecentErrors::default(),
            }),
            (None, _) => source.responsive = false,
        }
    }
    out
}
