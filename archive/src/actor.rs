//! `ArchiveActor`: one per source, a target of the source's fan-out like a destination.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;
use switchyard_actors::{Ack, Budget, Permit, Routed, RoutedBatch, SetSuppression};

use crate::config::ArchiveConfig;
use crate::delete::belongs;
use crate::keys::KeyRing;
use crate::object::{object_path, seal};

/// Events held (buffered or being written) past which the source waits.
const MAX_HELD_EVENTS: usize = 200_000;
/// How often buffers are checked for age.
const TICK: Duration = Duration::from_secs(1);

/// Events of one hour, not yet written.
struct Buffer {
    lines: Vec<u8>,
    acks: Vec<Ack>,
    /// The events' room in the archive's budget, released once they are written.
    permit: Permit,
    since: Instant,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveStats {
    pub received: u64,
    pub archived: u64,
    pub objects: u64,
    pub bytes_written: u64,
    pub write_failures: u64,
    /// Buffered events dropped when their user was put on the suppression list.
    pub suppressed: u64,
    /// Objects written to the replica, waiting to be, and its failed attempts.
    pub replica_objects: u64,
    pub replica_pending: usize,
    pub replica_failures: u64,
    pub held: usize,
    /// Key objects of the source refused (no valid HMAC): planted, or plaintext.
    pub refused_key_objects: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Message)]
#[rtype(result = "ArchiveStats")]
pub struct GetArchiveStats;

/// Writes every buffer now, whatever its age: a clean stop, so the offsets of what is
/// buffered can be committed and a restart redelivers nothing.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WriteNow;

pub struct ArchiveActor {
    source_id: String,
    store: Arc<dyn ObjectStore>,
    replica: Option<Arc<dyn ObjectStore>>,
    keys: Arc<KeyRing>,
    /// The source's newest key, once read (or made) at the start.
    recipient: Option<age::x25519::Recipient>,
    prefix: String,
    max_bytes: usize,
    max_age: Duration,
    /// By the start of the hour the events were received in.
    buffers: BTreeMap<DateTime<Utc>, Buffer>,
    held: usize,
    stats: ArchiveStats,
}

impl std::fmt::Debug for ArchiveActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveActor")
            .field("source_id", &self.source_id)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ArchiveActor {
    pub fn new(source_id: &str, config: &ArchiveConfig, store: Arc<dyn ObjectStore>, keys: Arc<KeyRing>) -> Self {
        ArchiveActor {
            source_id: source_id.to_string(),
            store,
            replica: None,
            keys,
            recipient: None,
            prefix: config.prefix.clone(),
            max_bytes: config.max_object_bytes,
            max_age: config.max_object_age(),
            buffers: BTreeMap::new(),
            held: 0,
            stats: ArchiveStats::default(),
        }
    }

    /// Also writes every object to `replica`.
    pub fn with_replica(mut self, replica: Option<Arc<dyn ObjectStore>>) -> Self {
        self.replica = replica;
        self
    }

    /// The budget a source's supervisor takes room from: [`MAX_HELD_EVENTS`].
    pub fn budget() -> Budget {
        Budget::new(MAX_HELD_EVENTS)
    }

    fn take(&mut self, routed: Routed, ctx: &mut Context<Self>) {
        self.stats.received += 1;
        let received = routed.event.common().received_at.unwrap_or_else(Utc::now);
        let hour = received.duration_trunc(TimeDelta::hours(1)).unwrap_or(received);
        let buffer = self.buffers.entry(hour).or_insert_with(|| Buffer {
            lines: Vec::new(),
            acks: Vec::new(),
            permit: Permit::none(),
            since: Instant::now(),
        });
        if let Err(error) = serde_json::to_writer(&mut buffer.lines, routed.event.as_ref()) {
            // An event that was decoded always encodes; keep the record uncommitted if not.
            tracing::error!(source_id = %self.source_id, %error, "event could not be archived");
            return;
        }
        buffer.lines.push(b'\n');
        buffer.acks.push(routed.ack);
        buffer.permit.merge(routed.permit);
        self.held += 1;
        if buffer.lines.len() >= self.max_bytes {
            self.write(hour, ctx);
        }
    }

    /// Seals the hour's buffer (off the actor's thread) and writes it; its events are
    /// done once the store has the object.
    fn write(&mut self, hour: DateTime<Utc>, ctx: &mut Context<Self>) {
        let Some(recipient) = self.recipient.clone() else {
            return;
        };
        let Some(buffer) = self.buffers.remove(&hour) else {
            return;
        };
        let path = object_path(&self.prefix, &self.source_id, hour);
        let lines = buffer.lines;
        let sealing = async move {
            actix_rt::task::spawn_blocking(move || seal(&lines, &recipient))
                .await
                .map_err(|e| e.to_string())?
        };
        let (acks, permit) = (buffer.acks, buffer.permit);
        ctx.spawn(sealing.into_actor(self).map(move |sealed, actor, ctx| match sealed {
            Ok(bytes) => actor.upload(ObjectPath::from(path), bytes, (acks, permit), 0, ctx),
            Err(reason) => {
                // Sealing is deterministic: keep the shares unfinished so the records
                // are redelivered, and say so.
                actor.stats.last_error = Some(reason.clone());
                tracing::error!(source_id = %actor.source_id, %reason, "archive object could not be sealed");
            }
        }));
    }

    fn upload(
        &mut self,
        path: ObjectPath,
        bytes: Vec<u8>,
        (acks, permit): (Vec<Ack>, Permit),
        attempt: usize,
        ctx: &mut Context<Self>,
    ) {
        let store = self.store.clone();
        let payload = PutPayload::from(bytes.clone());
        let target = path.clone();
        let put = async move { store.put(&target, payload).await };
        ctx.spawn(put.into_actor(self).map(move |result, actor, ctx| match result {
            Ok(_) => {
                actor.stats.objects += 1;
                actor.stats.bytes_written += bytes.len() as u64;
                actor.stats.archived += acks.len() as u64;
                actor.held -= acks.len();
                drop(permit);
                tracing::debug!(source_id = %actor.source_id, path = %path, events = acks.len(), "archive object written");
                for ack in acks {
                    ack.done();
                }
                if actor.replica.is_some() {
                    actor.stats.replica_pending += 1;
                    actor.replicate(path, bytes, 0, ctx);
                }
            }
            Err(error) => {
                actor.stats.write_failures += 1;
                actor.stats.last_error = Some(error.to_string());
                let wait = backoff(attempt);
                tracing::warn!(source_id = %actor.source_id, path = %path, %error, ?wait, "archive write failed, will retry");
                ctx.run_later(wait, move |actor, ctx| {
                    actor.upload(path, bytes, (acks, permit), attempt + 1, ctx)
                });
            }
        }));
    }

    /// Writes an object the primary has to the replica, retrying until it takes it.
    fn replicate(&mut self, path: ObjectPath, bytes: Vec<u8>, attempt: usize, ctx: &mut Context<Self>) {
        let Some(replica) = self.replica.clone() else { return };
        let payload = PutPayload::from(bytes.clone());
        let target = path.clone();
        let put = async move { replica.put(&target, payload).await };
        ctx.spawn(put.into_actor(self).map(move |result, actor, ctx| match result {
            Ok(_) => {
                actor.stats.replica_objects += 1;
                actor.stats.replica_pending -= 1;
            }
            Err(error) => {
                actor.stats.replica_failures += 1;
                actor.stats.last_error = Some(format!("replica: {error}"));
                let wait = backoff(attempt);
                tracing::warn!(source_id = %actor.source_id, path = %path, %error, ?wait, "archive replica write failed, will retry");
                ctx.run_later(wait, move |actor, ctx| actor.replicate(path, bytes, attempt + 1, ctx));
            }
        }));
    }

    /// Reads the source's key, or makes one (copied to the replica like an object),
    /// retrying until the store answers; nothing else is handled meanwhile, so events
    /// wait in the mailbox and the source waits behind them.
    fn load_key(&mut self, ctx: &mut Context<Self>) {
        let (keys, source_id) = (self.keys.clone(), self.source_id.clone());
        let fetch = move || {
            let (keys, source_id) = (keys.clone(), source_id.clone());
            async move { keys.current(&source_id).await }
        };
        let source_id = self.source_id.clone();
        let loading = fetch
            .retry(retry_policy())
            .sleep(actix_rt::time::sleep)
            .notify(move |error, wait| {
                tracing::warn!(%source_id, %error, ?wait, "archive key unavailable, will retry");
            });
        ctx.wait(loading.into_actor(self).map(|loaded, actor, ctx| match loaded {
            Ok((identity, created)) => {
                tracing::debug!(source_id = %actor.source_id, created = created.is_some(), "archive key ready");
                actor.recipient = Some(identity.to_public());
                if let (Some(created), Some(_)) = (created, &actor.replica) {
                    actor.stats.replica_pending += 1;
                    actor.replicate(created.path, created.bytes, 0, ctx);
                }
            }
            Err(error) => {
                tracing::error!(source_id = %actor.source_id, %error, "archive key unavailable");
            }
        }));
    }

    /// Drops buffered events of users just put on the suppression list: what reached
    /// the buffer before the supervisor knew of the deletion.
    fn purge(&mut self, list: &switchyard_actors::Suppression) {
        if list.is_empty() {
            return;
        }
        let mut dropped = 0;
        for buffer in self.buffers.values_mut() {
            let lines = std::mem::take(&mut buffer.lines);
            let acks = std::mem::take(&mut buffer.acks);
            let events = lines.split(|b| *b == b'\n').filter(|line| !line.is_empty());
            for (line, ack) in events.zip(acks) {
                if belongs(line, |id| list.holds_id(id)) {
                    ack.done();
                    drop(buffer.permit.split_one());
                    dropped += 1;
                } else {
                    buffer.lines.extend_from_slice(line);
                    buffer.lines.push(b'\n');
                    buffer.acks.push(ack);
                }
            }
        }
        self.buffers.retain(|_, buffer| !buffer.acks.is_empty());
        self.held -= dropped;
        self.stats.suppressed += dropped as u64;
    }

    fn write_old(&mut self, ctx: &mut Context<Self>) {
        let old: Vec<DateTime<Utc>> = self
            .buffers
            .iter()
            .filter(|(_, buffer)| buffer.since.elapsed() >= self.max_age)
            .map(|(hour, _)| *hour)
            .collect();
        for hour in old {
            self.write(hour, ctx);
        }
    }
}

impl Actor for ArchiveActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(32);
        self.load_key(ctx);
        ctx.run_interval(TICK, |actor, ctx| actor.write_old(ctx));
        tracing::info!(source_id = %self.source_id, "archive started");
    }
}

impl Handler<RoutedBatch> for ArchiveActor {
    type Result = ();

    fn handle(&mut self, batch: RoutedBatch, ctx: &mut Self::Context) {
        for routed in batch.0 {
            self.take(routed, ctx);
        }
    }
}

impl Handler<SetSuppression> for ArchiveActor {
    type Result = ();

    fn handle(&mut self, message: SetSuppression, _: &mut Self::Context) {
        self.purge(&message.0);
    }
}

impl Handler<WriteNow> for ArchiveActor {
    type Result = ();

    fn handle(&mut self, _: WriteNow, ctx: &mut Self::Context) {
        let hours: Vec<DateTime<Utc>> = self.buffers.keys().copied().collect();
        for hour in hours {
            self.write(hour, ctx);
        }
    }
}

impl Handler<GetArchiveStats> for ArchiveActor {
    type Result = MessageResult<GetArchiveStats>;

    fn handle(&mut self, _: GetArchiveStats, _: &mut Self::Context) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.held = self.held;
        stats.refused_key_objects = self.keys.refused(&self.source_id);
        MessageResult(stats)
    }
}

/// 200 ms doubling to a minute, jittered, without end: the archive never gives up.
fn retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(60))
        .with_jitter()
        .without_max_times()
}

/// The wait before write attempt `attempt + 1`.
fn backoff(attempt: usize) -> Duration {
    retry_policy().build().nth(attempt).unwrap_or(Duration::from_secs(60))
}
