//! Takes every event and discards it: for measuring the router itself, and for trying
//! a configuration without sending anything anywhere. It goes through the same queue,
//! ordering and accounting as any kind, so what it measures is the router's own path.

use std::sync::Arc;

use futures::future::LocalBoxFuture;
use switchyard_schemas::Event;

use crate::destination::config::{BlackholeConfig, EgressPolicy};
use crate::destination::delivery::{Answer, Batching, Delivery, Kind};

/// Events per (instant) request: large, so the blackhole costs the router little.
const BATCH: usize = 1_000;

#[derive(Debug)]
pub struct Blackhole;

impl Kind for Blackhole {
    type Settings = BlackholeConfig;

    fn connect(_: &BlackholeConfig, _: &Arc<EgressPolicy>) -> Result<Self, String> {
        Ok(Blackhole)
    }
}

impl Delivery for Blackhole {
    fn batching(&self) -> Batching {
        Batching::events(BATCH)
    }

    fn deliver(&self, _: Arc<str>, _: Vec<Arc<Event>>) -> LocalBoxFuture<'static, Answer> {
        Box::pin(futures::future::ready(Answer::Delivered))
    }
}
