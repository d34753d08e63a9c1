//! Which offset of each partition may be committed: the end of the contiguous prefix
//! of records that every target has finished with. One slow event holds back the
//! commit of its partition (never skipped), and nothing else.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use switchyard_actors::ack::{Ack, Completion};

#[derive(Debug, Default)]
struct PartitionState {
    /// Records handed out and not yet finished.
    in_flight: BTreeSet<i64>,
    /// One past the highest offset handed out.
    next: Option<i64>,
    /// The last position committed (or first seen), to skip redundant commits.
    committed: Option<i64>,
}

impl PartitionState {
    fn committable(&self) -> Option<i64> {
        self.in_flight.first().copied().or(self.next)
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Topic names, shared by every record's completion instead of copied into each.
    topics: Vec<Arc<str>>,
    partitions: HashMap<(Arc<str>, i32), PartitionState>,
    /// Records finished since the start, for progress reports and benchmarks.
    finished: u64,
}

impl Inner {
    fn intern(&mut self, topic: &str) -> Arc<str> {
        if let Some(known) = self.topics.iter().find(|known| ***known == *topic) {
            return known.clone();
        }
        let name: Arc<str> = Arc::from(topic);
        self.topics.push(name.clone());
        name
    }
}

/// Offsets of every partition this consumer owns.
#[derive(Debug, Clone, Default)]
pub struct OffsetTracker {
    inner: Arc<Mutex<Inner>>,
}

struct Finished {
    tracker: OffsetTracker,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
}

impl Completion for Finished {
    fn complete(&self) {
        self.tracker.finish(&self.topic, self.partition, self.offset);
    }
}

impl OffsetTracker {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep going.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a record read from Kafka; its [`Ack`] finishes it. Also returns the
    /// first offset skipped when the record comes after a gap: past the next offset
    /// expected (one after the last record read, or where the group left the
    /// partition). Reading an offset again (a re-fetch) is no gap.
    pub fn begin(&self, topic: &str, partition: i32, offset: i64) -> (Ack, Option<i64>) {
        let mut inner = self.lock();
        let topic = inner.intern(topic);
        let state = inner.partitions.entry((topic.clone(), partition)).or_default();
        let skipped_from = state.next.filter(|next| offset > *next);
        state.in_flight.insert(offset);
        state.next = Some(state.next.map_or(offset + 1, |next| next.max(offset + 1)));
        drop(inner);
        let ack = Ack::new(Finished {
            tracker: self.clone(),
            topic,
            partition,
            offset,
        });
        (ack, skipped_from)
    }

    /// Where the group left a newly assigned partition: its first record should be
    /// here. Ignored for a partition already being read.
    pub fn expect(&self, topic: &str, partition: i32, position: i64) {
        let mut inner = self.lock();
        let topic = inner.intern(topic);
        let state = inner.partitions.entry((topic, partition)).or_default();
        if state.next.is_none() && state.in_flight.is_empty() {
            state.next = Some(position);
            // Already committed there: nothing to commit until a record moves it.
            state.committed = Some(position);
        }
    }

    fn finish(&self, topic: &Arc<str>, partition: i32, offset: i64) {
        // A partition revoked meanwhile is gone: its new owner re-reads the record.
        let mut inner = self.lock();
        inner.finished += 1;
        if let Some(state) = inner.partitions.get_mut(&(topic.clone(), partition)) {
            state.in_flight.remove(&offset);
        }
    }

    /// Positions to commit (the next offset to read, Kafka's convention) for partitions
    /// that moved since the last call.
    pub fn to_commit(&self) -> Vec<(String, i32, i64)> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for ((topic, partition), state) in inner.partitions.iter_mut() {
            if let Some(position) = state.committable()
                && state.committed != Some(position)
            {
                state.committed = Some(position);
                out.push((topic.to_string(), *partition, position));
            }
        }
        out
    }

    /// Forgets a partition this consumer no longer owns; returns its committable
    /// position, to commit before letting go.
    pub fn revoke(&self, topic: &str, partition: i32) -> Option<i64> {
        let mut inner = self.lock();
        let topic = inner.intern(topic);
        inner
            .partitions
            .remove(&(topic, partition))
            .and_then(|state| state.committable())
    }

    /// The committable position of every partition (the next offset to read), without
    /// marking anything committed.
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        let inner = self.lock();
        inner
            .partitions
            .iter()
            .filter_map(|((topic, partition), state)| Some((topic.to_string(), *partition, state.committable()?)))
            .collect()
    }

    /// Records finished since the start (revoked partitions' included).
    pub fn finished(&self) -> u64 {
        self.lock().finished
    }

    /// Records handed out and not yet finished, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.lock().partitions.values().map(|state| state.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_finished_prefix() {
        let tracker = OffsetTracker::default();
        let acks: Vec<Ack> = (10..15).map(|offset| tracker.begin("t", 0, offset).0).collect();
        assert_eq!(
            tracker.to_commit(),
            vec![("t".to_string(), 0, 10)],
            "nothing finished: stay at the first"
        );
        let mut acks = acks.into_iter();
        let (a10, a11, a12, a13, a14) = (acks.next(), acks.next(), acks.next(), acks.next(), acks.next());
        a11.expect("11").done();
        a12.expect("12").done();
        assert!(
            tracker.to_commit().is_empty(),
            "10 is unfinished: the position must not move"
        );
        a10.expect("10").done();
        assert_eq!(tracker.to_commit(), vec![("t".to_string(), 0, 13)]);
        a14.expect("14").done();
        assert!(tracker.to_commit().is_empty(), "13 still holds the position");
        a13.expect("13").done();
        assert_eq!(tracker.to_commit(), vec![("t".to_string(), 0, 15)]);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn partitions_move_independently_and_revoked_ones_are_forgotten() {
        let tracker = OffsetTracker::default();
        let (slow, _) = tracker.begin("t", 0, 0);
        let (fast, _) = tracker.begin("t", 1, 0);
        fast.done();
        let mut commits = tracker.to_commit();
        commits.sort();
        assert_eq!(commits, vec![("t".to_string(), 0, 0), ("t".to_string(), 1, 1)]);
        assert_eq!(tracker.revoke("t", 0), Some(0));
        slow.done();
        assert!(tracker.to_commit().is_empty(), "a finish after revoke changes nothing");
    }

    #[test]
    fn a_record_past_the_expected_offset_reports_the_skipped_ones() {
        let tracker = OffsetTracker::default();
        tracker.expect("t", 0, 100);
        assert!(
            tracker.to_commit().is_empty(),
            "the group's own position needs no commit"
        );
        let (first, skipped) = tracker.begin("t", 0, 130);
        assert_eq!(skipped, Some(100), "the log was reset past 100..130");
        let (_, skipped) = tracker.begin("t", 0, 131);
        assert_eq!(skipped, None, "the next offset is no gap");
        let (_, skipped) = tracker.begin("t", 0, 125);
        assert_eq!(skipped, None, "reading an earlier offset again is no gap");
        let (_, skipped) = tracker.begin("t", 0, 140);
        assert_eq!(skipped, Some(132));
        first.done();
        tracker.expect("t", 0, 0);
        let (_, skipped) = tracker.begin("t", 0, 141);
        assert_eq!(skipped, None, "a partition being read keeps its own expectation");
        let (_, skipped) = tracker.begin("t", 1, 7);
        assert_eq!(
            skipped, None,
            "nothing expected of a partition the group never committed"
        );
    }
}
