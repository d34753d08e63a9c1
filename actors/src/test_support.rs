//! Actors and completions the unit tests of this crate share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix::prelude::*;

use crate::ack::Completion;
use crate::dead_letter::DeadLetter;
use crate::park::Park;
use crate::protocol::{Routed, RoutedBatch};

/// Records the messageId of each event it takes, "dead: <reason>" for each dead
/// letter and "parked: <messageId>" for each parked event, finishing them all.
pub(crate) struct Collect(pub(crate) Arc<Mutex<Vec<String>>>);

impl Actor for Collect {
    type Context = Context<Self>;
}

impl Handler<Routed> for Collect {
    type Result = ();
    fn handle(&mut self, message: Routed, _: &mut Self::Context) {
        let id = message.event.message_id().unwrap_or_default().to_string();
        self.0.lock().expect("not poisoned").push(id);
        message.ack.done();
    }
}

impl Handler<RoutedBatch> for Collect {
    type Result = ();
    fn handle(&mut self, batch: RoutedBatch, ctx: &mut Self::Context) {
        for message in batch.0 {
            <Self as Handler<Routed>>::handle(self, message, ctx);
        }
    }
}

impl Handler<DeadLetter> for Collect {
    type Result = ();
    fn handle(&mut self, message: DeadLetter, _: &mut Self::Context) {
        self.0
            .lock()
            .expect("not poisoned")
            .push(format!("dead: {}", message.reason));
        message.ack.done();
    }
}

impl Handler<Park> for Collect {
    type Result = ();
    fn handle(&mut self, message: Park, _: &mut Self::Context) {
        let id = message.message_id.unwrap_or_default();
        self.0.lock().expect("not poisoned").push(format!("parked: {id}"));
        message.ack.done();
    }
}

/// Counts completed records.
#[derive(Clone, Default)]
pub(crate) struct Count(pub(crate) Arc<AtomicUsize>);

impl Completion for Count {
    fn complete(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
