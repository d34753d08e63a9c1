//! Dropping repeated messageIds within a time window, in bounded memory. Clients retry
//! requests whose answers they didn't see, and a batch refused by Kafka half-way is sent
//! again whole: the copies carry the same messageId.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    capacity: usize,
    seen: HashSet<String>,
    order: VecDeque<(Instant, String)>,
}

impl Dedup {
    /// Remembers ids for `window`, at most `capacity` of them (the oldest go first).
    pub fn new(window: Duration, capacity: usize) -> Self {
        Dedup {
            window,
            capacity,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// True the first time an id is seen within the window.
    pub fn first_time(&mut self, message_id: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) <= self.window && self.order.len() < self.capacity {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.seen.remove(&id);
            }
        }
        if self.capacity == 0 || self.seen.contains(message_id) {
            return self.capacity == 0;
        }
        self.seen.insert(message_id.to_string());
        self.order.push_back((now, message_id.to_string()));
        true
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_dropped_and_forgotten_after_it() {
        let start = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(60), 100);
        assert!(dedup.first_time("a", start));
        assert!(!dedup.first_time("a", start + Duration::from_secs(30)));
        assert!(dedup.first_time("b", start + Duration::from_secs(30)));
        assert!(
            dedup.first_time("a", start + Duration::from_secs(61)),
            "outside the window"
        );
    }

    #[test]
    fn memory_stays_within_capacity() {
        let now = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(3600), 3);
        for id in ["a", "b", "c", "d", "e"] {
            assert!(dedup.first_time(id, now));
        }
        assert_eq!(dedup.len(), 3);
        assert!(dedup.first_time("a", now), "the oldest ids were let go to stay bounded");
    }
}
