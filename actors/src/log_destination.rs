//! A destination that writes each event's ids to the log (never its content): the
//! simplest member of the destination family, used when a source has no destination
//! configured.

use actix::prelude::*;

use crate::protocol::{Routed, RoutedBatch};

#[derive(Debug, Default)]
pub struct LogDestination {
    delivered: u64,
}

impl Actor for LogDestination {
    type Context = Context<Self>;
}

impl Handler<Routed> for LogDestination {
    type Result = ();

    fn handle(&mut self, message: Routed, _ctx: &mut Self::Context) {
        self.delivered += 1;
        let common = message.event.common();
        tracing::info!(
            source_id = %message.source_id,
            event_type = %message.event.event_type(),
            message_id = common.message_id.as_deref().unwrap_or_default(),
            delivered = self.delivered,
            "event routed"
        );
        message.ack.done();
    }
}

impl Handler<RoutedBatch> for LogDestination {
    type Result = ();

    fn handle(&mut self, batch: RoutedBatch, ctx: &mut Self::Context) {
        for message in batch.0 {
            <Self as Handler<Routed>>::handle(self, message, ctx);
        }
    }
}
