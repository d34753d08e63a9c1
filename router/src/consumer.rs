//! The poll loop, on a thread of its own (a blocked poll never stalls an actor, and a
//! busy actor never stalls the poll). Each record is registered with the offset
//! tracker and handed to its source's supervisor; the tracker's committable positions
//! are committed every half second and on shutdown. On a revoke, the finished prefix
//! of each revoked partition is committed and the rest forgotten: its new owner reads
//! those records again (at-least-once). A partition whose source can't keep up is
//! paused rather than blocking the loop (see [`Held`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::{Recipient, SendError};
use futures::FutureExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use switchyard_actors::{Ack, DeadLetter, Inbound, InboundBatch, Routed, Stage, SupervisorHandle};
use switchyard_schemas::config::KafkaConfig;
use switchyard_schemas::record::RecordHeaders;
use tokio::sync::watch;

use crate::offsets::OffsetTracker;
use crate::retry;
use crate::topology::Topology;

const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// How often records waiting for a full mailbox are offered again.
const HELD_RETRY: Duration = Duration::from_millis(1);
/// Records taken from the consumer's queue per turn of the loop, at most.
const MAX_BATCH: usize = 512;
/// How long a clean stop waits for handed-out records to finish.
const STOP_DRAIN: Duration = Duration::from_secs(15);
/// How long the loop waits for a busy actor to take a record before pausing its partition.
const BUSY_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("kafka consumer failed: {0}")]
    Kafka(#[from] KafkaError),
    #[error("cannot start the consumer thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the consumer thread panicked")]
    Panicked,
}

/// The running consumer; [`RouterConsumer::stop`] commits and returns.
#[derive(Debug)]
pub struct RouterConsumer {
    stop: watch::Sender<bool>,
    thread: JoinHandle<Result<(), ConsumerError>>,
    tracker: OffsetTracker,
    stats: Arc<ConsumerStats>,
}

/// What the poll loop has done, for metrics.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Records read (ingest and retry topics).
    pub records: AtomicU64,
    /// Partitions paused now because the actor they feed is stuck.
    pub paused_partitions: AtomicU64,
    /// Microseconds the loop spent waiting for busy actors to take records.
    pub backpressure_micros: AtomicU64,
    /// Consumer lag by (topic, partition), from librdkafka's statistics.
    lag: Mutex<Vec<(String, i32, i64)>>,
}

impl ConsumerStats {
    pub fn lag(&self) -> Vec<(String, i32, i64)> {
        self.lag.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl RouterConsumer {
    /// Subscribes `group_id` to the ingest topic (and the retry topic, when given) and
    /// starts consuming.
    pub fn start(
        config: &KafkaConfig,
        group_id: &str,
        retry_topic: Option<&str>,
        topology: Topology,
    ) -> Result<Self, ConsumerError> {
        let tracker = OffsetTracker::default();
        let revoked = Revoked::default();
        let stats = Arc::new(ConsumerStats::default());
        let context = RouterContext {
            tracker: tracker.clone(),
            revoked: revoked.clone(),
            stats: stats.clone(),
        };
        let consumer = create(config, group_id, context)?;
        let mut topics = vec![config.topic.as_str()];
        topics.extend(retry_topic);
        consumer.subscribe(&topics)?;
        tracing::info!(topic = %config.topic, retry_topic, group_id, "router consuming");
        let retry_topic = retry_topic.map(str::to_string);
        let (stop, stopped) = watch::channel(false);
        let thread_tracker = tracker.clone();
        let thread = std::thread::Builder::new()
            .name("kafka-consumer".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(consume(
                    consumer,
                    topology,
                    retry_topic,
                    thread_tracker,
                    revoked,
                    stopped,
                ))
            })?;
        Ok(RouterConsumer {
            stop,
            thread,
            tracker,
            stats,
        })
    }

    pub fn tracker(&self) -> &OffsetTracker {
        &self.tracker
    }

    pub fn stats(&self) -> Arc<ConsumerStats> {
        self.stats.clone()
    }

    /// Stops polling, commits what is finished, and waits for the thread.
    pub fn stop(self) -> Result<(), ConsumerError> {
        let _ = self.stop.send(true);
        self.thread.join().map_err(|_| ConsumerError::Panicked)?
    }
}

struct RouterContext {
    tracker: OffsetTracker,
    revoked: Revoked,
    stats: Arc<ConsumerStats>,
}

impl ClientContext for RouterContext {
    fn stats(&self, statistics: Statistics) {
        let mut lag = Vec::new();
        for (name, topic) in &statistics.topics {
            for (partition, state) in &topic.partitions {
                // librdkafka lists an internal partition -1 and -1 for unknown lag.
                if *partition >= 0 && state.consumer_lag >= 0 {
                    lag.push((name.clone(), *partition, state.consumer_lag));
                }
            }
        }
        lag.sort();
        *self.stats.lag.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = lag;
    }
}

impl ConsumerContext for RouterContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else { return };
        let mut finished = TopicPartitionList::new();
        for element in revoked.elements() {
            self.revoked.add(element.topic(), element.partition());
            if let Some(position) = self.tracker.revoke(element.topic(), element.partition()) {
                let _ = finished.add_partition_offset(element.topic(), element.partition(), Offset::Offset(position));
            }
        }
        tracing::info!(partitions = revoked.count(), "partitions revoked");
        if finished.count() > 0 {
            commit(consumer, &finished, CommitMode::Sync);
        }
    }
}

/// How the router fetches, public so the benchmark's bare consumer reads the broker the
/// same way.
pub const FETCH_SETTINGS: [(&str, &str); 2] = [
    // Kafka answers a fetch as soon as records arrive, so there this only sets how often
    // an idle router asks (200 times a second per broker). Some Kafka-protocol brokers
    // hold every fetch for the whole wait (tansu 0.6 does), and there it is the router's
    // added latency: measured end to end at 10k events/s, p50 37 ms with 20, 21 ms with 5.
    // Many idle routers can raise it in `[kafka] options`.
    ("fetch.wait.max.ms", "5"),
    // When a partition's prefetched records pass queued.min.messages or
    // queued.max.messages.kbytes (a router working through a backlog), librdkafka
    // postpones its next fetch by this long. At the default, 1 s, the router drained its
    // queue and then waited: seen in the router bench as a ~570 ms stall before the last
    // requests, at half the throughput, in 7 of 42 runs; 0 of 30 with 20 ms.
    ("fetch.queue.backoff.ms", "20"),
];

fn create(
    config: &KafkaConfig,
    group_id: &str,
    context: RouterContext,
) -> Result<StreamConsumer<RouterContext>, KafkaError> {
    let mut settings = vec![
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "6000"),
        // Consumer lag for metrics comes from these statistics.
        ("statistics.interval.ms", "5000"),
    ];
    settings.extend(FETCH_SETTINGS);
    switchyard_kafka::manual_consumer(&config.brokers, group_id, &settings, &config.options)
        .create_with_context(context)
}

fn commit<C: Consumer<X>, X: ConsumerContext>(consumer: &C, positions: &TopicPartitionList, mode: CommitMode) {
    match consumer.commit(positions, mode) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, "offset commit failed; it is retried with the next one"),
    }
}

fn commit_finished(consumer: &StreamConsumer<RouterContext>, tracker: &OffsetTracker, mode: CommitMode) {
    let mut positions = TopicPartitionList::new();
    for (topic, partition, position) in tracker.to_commit() {
        let _ = positions.add_partition_offset(&topic, partition, Offset::Offset(position));
    }
    if positions.count() > 0 {
        commit(consumer, &positions, mode);
    }
}

async fn consume(
    consumer: StreamConsumer<RouterContext>,
    topology: Topology,
    retry_topic: Option<String>,
    tracker: OffsetTracker,
    revoked: Revoked,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ConsumerError> {
    let mut commit_tick = tokio::time::interval(COMMIT_EVERY);
    let mut held = Held::default();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = commit_tick.tick() => commit_finished(&consumer, &tracker, CommitMode::Async),
            _ = tokio::time::sleep(HELD_RETRY), if !held.is_empty() => held.offer(&consumer),
            message = consumer.recv() => {
                let mut batch = Batch::default();
                let mut next = Some(message);
                // What else is already fetched goes along, grouped, without waiting.
                while let Some(message) = next.take() {
                    match message {
                        Ok(message) => {
                            consumer.context().stats.records.fetch_add(1, Ordering::Relaxed);
                            let ack = tracker.begin(message.topic(), message.partition(), message.offset());
                            let handoff = if retry_topic.as_deref() == Some(message.topic()) {
                                prepare_returning(&topology, &message, ack)
                            } else {
                                prepare(&topology, &message, ack)
                            };
                            batch.add(message.topic(), message.partition(), handoff);
                        }
                        Err(error) => tracing::warn!(%error, "kafka poll failed"),
                    }
                    if batch.len() < MAX_BATCH {
                        next = consumer.recv().now_or_never();
                    }
                }
                held.forget(revoked.take(), &consumer.context().stats);
                for (topic, partition, handoff) in batch.entries {
                    held.push(&consumer, &topic, partition, handoff).await;
                }
            }
        }
    }
    // A clean stop takes nothing new and gives what was handed out a moment to finish
    // (the archive writes its buffers now rather than when they age), committing as it
    // goes, so a rolling restart redelivers little or nothing. What is still unfinished
    // at the deadline stays uncommitted and is redelivered to the next router.
    topology.write_archives_now();
    let deadline = tokio::time::Instant::now() + STOP_DRAIN;
    while tracker.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        if !held.is_empty() {
            held.offer(&consumer);
        }
        commit_finished(&consumer, &tracker, CommitMode::Async);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    commit_finished(&consumer, &tracker, CommitMode::Sync);
    tracing::info!(in_flight = tracker.in_flight(), "router consumer stopped");
    Ok(())
}

/// The records of one poll, in order per partition; consecutive records of a partition
/// for the same supervisor travel as one message.
#[derive(Default)]
struct Batch {
    entries: Vec<(String, i32, Handoff)>,
    records: usize,
}

impl Batch {
    fn len(&self) -> usize {
        self.records
    }

    fn add(&mut self, topic: &str, partition: i32, handoff: Handoff) {
        self.records += 1;
        let handoff = match handoff {
            Handoff::Source(addr, records) => {
                let last = self
                    .entries
                    .iter_mut()
                    .rev()
                    .find(|(t, p, _)| *p == partition && t == topic);
                match last {
                    Some((_, _, Handoff::Source(to, earlier))) if Arc::ptr_eq(to, &addr) => {
                        earlier.extend(records);
                        return;
                    }
                    _ => Handoff::Source(addr, records),
                }
            }
            other => other,
        };
        self.entries.push((topic.to_string(), partition, handoff));
    }
}

/// Where a record goes next: its source's supervisor, the dead-letter topic, or (from
/// the retry topic) straight back to its destination once due.
enum Handoff {
    Source(Arc<SupervisorHandle>, Vec<Inbound>),
    DeadLetter(Recipient<DeadLetter>, DeadLetter),
    Destination(Recipient<Routed>, Routed, SystemTime),
    Finished,
}

impl Handoff {
    /// A parked event back from the retry topic before its time is not; all else is.
    fn is_due(&self) -> bool {
        match self {
            Handoff::Destination(_, _, not_before) => SystemTime::now() >= *not_before,
            _ => true,
        }
    }

    /// Hands over without waiting; gives the record back when the mailbox is full (or,
    /// for a parked event, when it is not due yet).
    fn try_send(self) -> Option<Handoff> {
        let closed = match self {
            Handoff::Source(handle, records) => {
                let count = records.len();
                // Counted before sending: the supervisor may take them at once.
                handle.queued.fetch_add(count, Ordering::Relaxed);
                match handle.addr.try_send(InboundBatch(records)) {
                    Ok(()) => return None,
                    Err(error) => {
                        let _ = handle
                            .queued
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(count)));
                        match error {
                            SendError::Full(batch) => return Some(Handoff::Source(handle, batch.0)),
                            SendError::Closed(batch) => batch
                                .0
                                .into_iter()
                                .next()
                                .map(|r| r.headers.source_id)
                                .unwrap_or_default(),
                        }
                    }
                }
            }
            Handoff::DeadLetter(recipient, letter) => match recipient.try_send(letter) {
                Ok(()) => return None,
                Err(SendError::Full(letter)) => return Some(Handoff::DeadLetter(recipient, letter)),
                Err(SendError::Closed(letter)) => letter.source_id,
            },
            Handoff::Destination(recipient, routed, not_before) => {
                if SystemTime::now() < not_before {
                    return Some(Handoff::Destination(recipient, routed, not_before));
                }
                match recipient.try_send(routed) {
                    Ok(()) => return None,
                    Err(SendError::Full(routed)) => return Some(Handoff::Destination(recipient, routed, not_before)),
                    Err(SendError::Closed(routed)) => routed.source_id.to_string(),
                }
            }
            Handoff::Finished => return None,
        };
        // The record's share went down with the mailbox: it is redelivered later.
        tracing::error!(source_id = %closed, "actor unavailable; the record will be redelivered");
        None
    }
}

fn header_pairs<'a>(message: &'a BorrowedMessage<'_>) -> Vec<(&'a str, Option<&'a [u8]>)> {
    message
        .headers()
        .map(|headers| headers.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default()
}

/// A parked event back from the retry topic goes to its destination, not through its
/// source again (it was validated, deduplicated and transformed before it was parked).
fn prepare_returning(topology: &Topology, message: &BorrowedMessage<'_>, ack: Ack) -> Handoff {
    let value = message.payload().unwrap_or_default();
    let returning = match retry::decode(&header_pairs(message), value) {
        Ok(returning) => returning,
        Err(reason) => return dead_letter(topology, "unknown", None, reason, value.to_vec(), ack),
    };
    let Some(recipient) = topology.destination(&returning.source_id, &returning.destination_id) else {
        // The destination left the configuration: its events are no longer wanted.
        tracing::info!(
            source_id = %returning.source_id, destination_id = %returning.destination_id,
            "parked event of a removed destination dropped"
        );
        ack.done();
        return Handoff::Finished;
    };
    let routed = Routed {
        source_id: Arc::from(returning.source_id.as_str()),
        event: Arc::new(returning.event),
        ack,
        parked: Some(returning.state),
        trace: None,
    };
    Handoff::Destination(recipient, routed, returning.not_before)
}

fn prepare(topology: &Topology, message: &BorrowedMessage<'_>, ack: Ack) -> Handoff {
    let value = message.payload().unwrap_or_default().to_vec();
    let pairs = header_pairs(message);
    let headers = match RecordHeaders::from_pairs(pairs) {
        Ok(headers) => headers,
        Err(error) => return dead_letter(topology, "unknown", None, error.to_string(), value, ack),
    };
    match topology.supervisor(&headers.source_id) {
        Some(supervisor) => Handoff::Source(supervisor, vec![Inbound { headers, value, ack }]),
        None => {
            let reason = format!("no source {:?} is configured", headers.source_id);
            let (source_id, message_id) = (headers.source_id.clone(), headers.message_id.clone());
            dead_letter(topology, &source_id, message_id, reason, value, ack)
        }
    }
}

fn dead_letter(
    topology: &Topology,
    source_id: &str,
    message_id: Option<String>,
    reason: String,
    value: Vec<u8>,
    ack: Ack,
) -> Handoff {
    tracing::warn!(source_id, %reason, "unroutable record");
    let letter = DeadLetter {
        source_id: source_id.to_string(),
        destination_id: None,
        stage: Stage::Validate,
        reason,
        attempts: 0,
        message_id,
        value,
        ack,
    };
    Handoff::DeadLetter(topology.dead_letters().clone(), letter)
}

/// Partitions revoked during a poll, for the loop to drop what it holds of them.
#[derive(Debug, Clone, Default)]
struct Revoked(Arc<Mutex<Vec<(String, i32)>>>);

impl Revoked {
    fn add(&self, topic: &str, partition: i32) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((topic.to_string(), partition));
    }

    fn take(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

struct Waiting {
    records: VecDeque<Handoff>,
    paused: bool,
}

/// Records of partitions whose next actor can't take them, in partition order. A busy
/// actor (one that takes a record within [`BUSY_WAIT`]) is waited for: that is the
/// backpressure that keeps the router at its actors' pace. A stuck one (nothing taken
/// within it, or a parked event not yet due) has its partition paused, so the poll loop
/// keeps serving every other partition, rebalances and commits; the partition resumes
/// once its records are taken. librdkafka drops what it prefetched of a paused
/// partition and fetches again from the last record returned, which is in here.
#[derive(Default)]
struct Held {
    partitions: HashMap<(String, i32), Waiting>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    async fn push(&mut self, consumer: &StreamConsumer<RouterContext>, topic: &str, partition: i32, handoff: Handoff) {
        let key = (topic.to_string(), partition);
        if let Some(waiting) = self.partitions.get_mut(&key) {
            waiting.records.push_back(handoff);
            return;
        }
        let Some(mut handoff) = handoff.try_send() else {
            return;
        };
        let started = Instant::now();
        let deadline = started + BUSY_WAIT;
        let waited = |stats: &ConsumerStats| {
            let micros = started.elapsed().as_micros() as u64;
            stats.backpressure_micros.fetch_add(micros, Ordering::Relaxed);
        };
        while handoff.is_due() && Instant::now() < deadline {
            tokio::time::sleep(HELD_RETRY).await;
            match handoff.try_send() {
                Some(back) => handoff = back,
                None => return waited(&consumer.context().stats),
            }
        }
        waited(&consumer.context().stats);
        let paused = set_paused(consumer, &key, true);
        let waiting = Waiting {
            records: VecDeque::from([handoff]),
            paused,
        };
        self.partitions.insert(key, waiting);
    }

    /// Offers held records again, in order; resumes partitions that emptied.
    fn offer(&mut self, consumer: &StreamConsumer<RouterContext>) {
        self.partitions.retain(|key, waiting| {
            while let Some(handoff) = waiting.records.pop_front() {
                if let Some(handoff) = handoff.try_send() {
                    waiting.records.push_front(handoff);
                    return true;
                }
            }
            if waiting.paused {
                set_paused(consumer, key, false);
            }
            false
        });
    }

    /// Drops the records of revoked partitions: unfinished, so their new owner reads
    /// them again.
    fn forget(&mut self, revoked: Vec<(String, i32)>, stats: &ConsumerStats) {
        for key in revoked {
            if self.partitions.remove(&key).is_some_and(|waiting| waiting.paused) {
                let _ = stats
                    .paused_partitions
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        }
    }
}

/// Pauses or resumes one partition; returns whether it is now paused.
fn set_paused(consumer: &StreamConsumer<RouterContext>, (topic, partition): &(String, i32), pause: bool) -> bool {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, *partition);
    let result = if pause {
        consumer.pause(&list)
    } else {
        consumer.resume(&list)
    };
    match result {
        Ok(()) => {
            let paused = &consumer.context().stats.paused_partitions;
            if pause {
                paused.fetch_add(1, Ordering::Relaxed);
            } else {
                let _ = paused.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
            if pause {
                tracing::warn!(topic, partition, "partition paused: the actor it feeds is full");
            } else {
                tracing::info!(topic, partition, "partition resumed");
            }
            pause
        }
        Err(error) => {
            tracing::warn!(topic, partition, %error, "cannot pause or resume a partition");
            false
        }
    }
}
