//! `DeliveryQueue`: what a destination holds and in which order it sends it. The line
//! of events ready to go, the events waiting for their retry time, the requests in
//! flight, and (with per-user ordering) which users have an event out. Plain data with
//! no timers and no IO: the time is an argument, so its tests move the clock by hand
//! instead of sleeping, and the actor around it owns the timers, the client, the
//! breaker and what happens to an event once it is finished.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use super::delivery::Batching;

/// What the queue needs to know of an event.
pub trait Queued {
    /// Whose events stay in order under per-user ordering.
    fn user(&self) -> &str;
    /// Whether it was sent before: a retry never waits for a fuller batch.
    fn tried(&self) -> bool;
    /// When it was put in line here, for lingering.
    fn arrived(&self) -> Instant;
    /// Its encoded size; asked only when the kind has a byte limit.
    fn size(&self) -> usize;
    /// Sent in a request of its own (suspected of breaking the client).
    fn alone(&self) -> bool {
        false
    }
}

#[derive(Debug)]
pub struct DeliveryQueue<T> {
    per_user: bool,
    ready: VecDeque<T>,
    /// By retry time; the sequence number keeps equal times apart and in order.
    delayed: BTreeMap<(Instant, u64), T>,
    sequence: u64,
    in_flight: HashMap<u64, Vec<T>>,
    in_flight_events: usize,
    next_request: u64,
    /// Per-user ordering: events in flight or waiting for a retry, per user.
    busy_users: HashMap<String, usize>,
}

impl<T: Queued> DeliveryQueue<T> {
    pub fn new(per_user: bool) -> Self {
        DeliveryQueue {
            per_user,
            ready: VecDeque::new(),
            delayed: BTreeMap::new(),
            sequence: 0,
            in_flight: HashMap::new(),
            in_flight_events: 0,
            next_request: 0,
            busy_users: HashMap::new(),
        }
    }

    /// At the back of the line.
    pub fn push(&mut self, item: T) {
        self.ready.push_back(item);
    }

    /// Every event held: ready, waiting for a retry, or in flight.
    pub fn len(&self) -> usize {
        self.ready.len() + self.delayed.len() + self.in_flight_events
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    pub fn waiting_retry(&self) -> usize {
        self.delayed.len()
    }

    /// Events in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight_events
    }

    pub fn requests(&self) -> usize {
        self.in_flight.len()
    }

    /// When the earliest retry is due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.delayed.keys().next().map(|(at, _)| *at)
    }

    /// Moves the retries due by `now` to the front of the line, in their order: each
    /// is its user's first event again.
    pub fn promote_due(&mut self, now: Instant) {
        let due: Vec<(Instant, u64)> = self.delayed.range(..=(now, u64::MAX)).map(|(key, _)| *key).collect();
        for key in due.into_iter().rev() {
            if let Some(item) = self.delayed.remove(&key) {
                self.release_user(&item);
                self.ready.push_front(item);
            }
        }
    }

    /// A partial batch of first attempts waits for more until the oldest has waited
    /// `linger`: until when, or `None` to send now.
    pub fn lingering(&self, batching: &Batching, now: Instant) -> Option<Instant> {
        let first = self.ready.front()?;
        if batching.linger.is_zero() || self.ready.len() >= batching.max_events || first.tried() {
            return None;
        }
        let until = first.arrived() + batching.linger;
        (now < until).then_some(until)
    }

    /// Puts the next batch in flight: up to `max_events` (and `max_bytes`) from the
    /// front of the line, skipping users with an event out under per-user ordering.
    /// Returns the request's id and its events, or `None` when nothing can go.
    pub fn start(&mut self, batching: &Batching) -> Option<(u64, &[T])> {
        let batch = if self.per_user {
            self.take_in_user_order(batching)
        } else {
            let mut bytes = 0;
            let mut take = 0;
            while take < batching.max_events.max(1) && take < self.ready.len() {
                if take > 0 && (self.ready[take].alone() || self.ready[0].alone()) {
                    break;
                }
                if let Some(limit) = batching.max_bytes {
                    bytes += self.ready[take].size();
                    if take > 0 && bytes > limit {
                        break;
                    }
                }
                take += 1;
            }
            self.ready.drain(..take).collect::<Vec<T>>()
        };
        if batch.is_empty() {
            return None;
        }
        self.next_request += 1;
        self.in_flight_events += batch.len();
        let batch = self.in_flight.entry(self.next_request).or_insert(batch);
        Some((self.next_request, batch.as_slice()))
    }

    /// Up to a batch of ready events whose users have nothing out, keeping each user's
    /// events in their order; they count as out until finished.
    fn take_in_user_order(&mut self, batching: &Batching) -> Vec<T> {
        let mut taken = Vec::new();
        let mut bytes = 0;
        let mut full = false;
        let mut skipped_users: HashSet<String> = HashSet::new();
        let mut kept = VecDeque::with_capacity(self.ready.len());
        while let Some(item) = self.ready.pop_front() {
            let blocked = self.busy_users.contains_key(item.user()) || skipped_users.contains(item.user());
            if !full && !blocked {
                if let Some(limit) = batching.max_bytes {
                    bytes += item.size();
                    full = !taken.is_empty() && bytes > limit;
                }
                full |= !taken.is_empty() && item.alone();
                if !full {
                    full = taken.len() + 1 >= batching.max_events.max(1) || item.alone();
                    taken.push(item);
                    continue;
                }
            }
            skipped_users.insert(item.user().to_string());
            kept.push_back(item);
        }
        self.ready = kept;
        for item in &taken {
            *self.busy_users.entry(item.user().to_string()).or_default() += 1;
        }
        taken
    }

    /// A request's events, out of flight. Their users stay busy until each event is
    /// [`done`](Self::done) or put back in line by [`retry_at`](Self::retry_at) and
    /// then due.
    pub fn finish(&mut self, id: u64) -> Option<Vec<T>> {
        let batch = self.in_flight.remove(&id)?;
        self.in_flight_events -= batch.len();
        Some(batch)
    }

    /// An event finished for good (delivered, dead-lettered): its user's turn is over.
    pub fn done(&mut self, item: &T) {
        self.release_user(item);
    }

    /// Events to send again at `at`, together and in their order, which per-user
    /// ordering relies on.
    pub fn retry_at(&mut self, items: Vec<T>, at: Instant) {
        for item in items {
            self.sequence += 1;
            self.delayed.insert((at, self.sequence), item);
        }
    }

    /// Every request abandoned (the client is being restarted): their events go back
    /// to the front of the line in the order they were sent. Returns the requests' ids.
    pub fn abandon_in_flight(&mut self) -> Vec<u64> {
        let mut requests: Vec<(u64, Vec<T>)> = self.in_flight.drain().collect();
        requests.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        self.in_flight_events = 0;
        let mut ids = Vec::with_capacity(requests.len());
        for (id, batch) in requests {
            ids.push(id);
            for item in batch.into_iter().rev() {
                self.release_user(&item);
                self.ready.push_front(item);
            }
        }
        ids
    }

    /// The event waiting for the latest retry, with when it is due.
    pub fn pop_latest_retry(&mut self) -> Option<(Instant, T)> {
        let entry = self.delayed.last_entry()?;
        let (due, _) = *entry.key();
        let item = entry.remove();
        self.release_user(&item);
        Some((due, item))
    }

    /// The event at the back of the line.
    pub fn pop_last_ready(&mut self) -> Option<T> {
        self.ready.pop_back()
    }

    /// Everything not in flight, the line first, then the retries by due time.
    pub fn drain_waiting(&mut self) -> Vec<T> {
        let delayed = std::mem::take(&mut self.delayed);
        for item in delayed.values() {
            self.release_user(item);
        }
        self.ready.drain(..).chain(delayed.into_values()).collect()
    }

    fn release_user(&mut self, item: &T) {
        if !self.per_user {
            return;
        }
        if let Some(count) = self.busy_users.get_mut(item.user()) {
            *count -= 1;
            if *count == 0 {
                self.busy_users.remove(item.user());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Item {
        id: u32,
        user: &'static str,
        tried: bool,
        arrived: Instant,
        size: usize,
        alone: bool,
    }

    impl Queued for Item {
        fn user(&self) -> &str {
            self.user
        }
        fn tried(&self) -> bool {
            self.tried
        }
        fn arrived(&self) -> Instant {
            self.arrived
        }
        fn size(&self) -> usize {
            self.size
        }
        fn alone(&self) -> bool {
            self.alone
        }
    }

    fn item(id: u32, user: &'static str, arrived: Instant) -> Item {
        Item {
            id,
            user,
            tried: false,
            arrived,
            size: 100,
            alone: false,
        }
    }

    fn ids(items: &[Item]) -> Vec<u32> {
        items.iter().map(|item| item.id).collect()
    }

    fn started(queue: &mut DeliveryQueue<Item>, batching: &Batching) -> Option<(u64, Vec<u32>)> {
        queue.start(batching).map(|(id, batch)| (id, ids(batch)))
    }

    fn filled(per_user: bool, users: &[&'static str], now: Instant) -> DeliveryQueue<Item> {
        let mut queue = DeliveryQueue::new(per_user);
        for (id, user) in users.iter().enumerate() {
            queue.push(item(id as u32, user, now));
        }
        queue
    }

    #[test]
    fn batches_go_in_arrival_order_within_the_event_and_byte_limits() {
        let now = Instant::now();
        let mut queue = filled(false, &["a", "b", "c", "d", "e"], now);
        let two = Batching::events(2);
        assert_eq!(started(&mut queue, &two), Some((1, vec![0, 1])));
        let bytes = Batching {
            max_bytes: Some(250),
            ..Batching::events(10)
        };
        assert_eq!(
            started(&mut queue, &bytes),
            Some((2, vec![2, 3])),
            "a third would make 300 bytes"
        );
        assert_eq!((queue.in_flight(), queue.requests(), queue.len()), (4, 2, 5));
        assert_eq!(ids(&queue.finish(1).expect("in flight")), vec![0, 1]);
        assert_eq!(queue.finish(1), None, "finished once");

        // An event larger than the limit goes alone rather than never.
        queue.push(Item {
            size: 1_000,
            ..item(9, "f", now)
        });
        assert_eq!(started(&mut queue, &bytes), Some((3, vec![4])), "9 would take it over");
        assert_eq!(started(&mut queue, &bytes), Some((4, vec![9])), "alone");
        let mut large = filled(false, &[], now);
        large.push(Item {
            size: 1_000,
            ..item(7, "g", now)
        });
        large.push(item(8, "h", now));
        assert_eq!(started(&mut large, &bytes), Some((1, vec![7])));
        assert_eq!(started(&mut large, &bytes), Some((2, vec![8])));
        assert_eq!(started(&mut large, &bytes), None, "nothing left");
    }

    #[test]
    fn a_partial_batch_of_first_attempts_lingers_until_the_oldest_has_waited() {
        let start = Instant::now();
        let batching = Batching {
            linger: Duration::from_millis(500),
            ..Batching::events(3)
        };
        let mut queue = filled(false, &["a", "b"], start);
        let until = start + Duration::from_millis(500);
        assert_eq!(queue.lingering(&batching, start), Some(until));
        assert_eq!(
            queue.lingering(&batching, start + Duration::from_millis(499)),
            Some(until)
        );
        assert_eq!(queue.lingering(&batching, until), None, "waited long enough");
        queue.push(item(2, "c", start + Duration::from_millis(100)));
        assert_eq!(queue.lingering(&batching, start), None, "a full batch goes at once");

        let mut retry = filled(false, &[], start);
        retry.push(Item {
            tried: true,
            ..item(0, "a", start)
        });
        assert_eq!(
            retry.lingering(&batching, start),
            None,
            "a retry never waits for company"
        );
        assert_eq!(
            filled(false, &["a"], start).lingering(&Batching::events(3), start),
            None,
            "no linger: at once"
        );
    }

    #[test]
    fn retries_wait_their_time_then_go_first_in_their_order() {
        let start = Instant::now();
        let mut queue = filled(false, &["a", "b", "c"], start);
        let (id, _) = queue.start(&Batching::events(2)).expect("a batch");
        let batch = queue.finish(id).expect("in flight");
        let at = start + Duration::from_secs(30);
        queue.retry_at(batch, at);
        queue.push(item(3, "d", start));
        assert_eq!(
            (queue.ready(), queue.waiting_retry(), queue.next_retry()),
            (2, 2, Some(at))
        );

        queue.promote_due(at - Duration::from_millis(1));
        assert_eq!(queue.waiting_retry(), 2, "not due yet");
        queue.promote_due(at);
        assert_eq!(queue.next_retry(), None);
        assert_eq!(
            started(&mut queue, &Batching::events(10)).map(|(_, ids)| ids),
            Some(vec![0, 1, 2, 3]),
            "the retried events first, in their order, then the line"
        );
    }

    #[test]
    fn per_user_order_holds_a_users_later_events_while_one_is_out() {
        let start = Instant::now();
        let mut queue = filled(true, &["u", "u", "v", "u", "w"], start);
        let two = Batching::events(2);
        let (first, sent) = started(&mut queue, &two).expect("a batch");
        assert_eq!(sent, vec![0, 1], "a user's events may go together");
        assert_eq!(
            started(&mut queue, &two).map(|(_, ids)| ids),
            Some(vec![2, 4]),
            "u is out: its third event waits, v and w go past it"
        );
        assert_eq!(queue.start(&two).map(|(id, _)| id), None, "only u's event is left");

        // u's events fail and wait for a retry: u's later event still waits.
        let retry = queue.finish(first).expect("in flight");
        for item in queue.finish(2).expect("in flight") {
            queue.done(&item);
        }
        let at = start + Duration::from_secs(5);
        queue.retry_at(retry, at);
        queue.push(item(5, "v", start));
        assert_eq!(started(&mut queue, &two).map(|(_, ids)| ids), Some(vec![5]));
        queue.promote_due(at);
        assert_eq!(
            started(&mut queue, &Batching::events(10)).map(|(_, ids)| ids),
            Some(vec![0, 1, 3]),
            "due: u's events in their order, the later one behind them"
        );

        // A byte limit counts only what is taken.
        let mut small = filled(true, &["x", "x", "y"], start);
        let bytes = Batching {
            max_bytes: Some(150),
            ..Batching::events(10)
        };
        assert_eq!(started(&mut small, &bytes).map(|(_, ids)| ids), Some(vec![0]));
        assert_eq!(
            started(&mut small, &bytes).map(|(_, ids)| ids),
            Some(vec![2]),
            "x is out, y goes"
        );
    }

    #[test]
    fn abandoned_requests_go_back_to_the_front_in_the_order_they_were_sent() {
        let start = Instant::now();
        let mut queue = filled(true, &["a", "b", "c", "a", "d"], start);
        let two = Batching::events(2);
        queue.start(&two).expect("first");
        queue.start(&two).expect("second");
        assert_eq!(queue.ready(), 1, "a's second event waits");
        let mut abandoned = queue.abandon_in_flight();
        abandoned.sort();
        assert_eq!(abandoned, vec![1, 2]);
        assert_eq!((queue.in_flight(), queue.requests(), queue.len()), (0, 0, 5));
        assert_eq!(
            started(&mut queue, &Batching::events(10)).map(|(_, ids)| ids),
            Some(vec![0, 1, 2, 4, 3]),
            "in the order sent, and a no longer counts as out"
        );
    }

    #[test]
    fn the_retry_due_last_and_the_back_of_the_line_can_be_taken_out() {
        let start = Instant::now();
        let mut queue = filled(false, &["a", "b", "c", "d"], start);
        let (id, _) = queue.start(&Batching::events(1)).expect("a batch");
        let first = queue.finish(id).expect("in flight");
        queue.retry_at(first, start + Duration::from_secs(60));
        let (id, _) = queue.start(&Batching::events(1)).expect("a batch");
        let second = queue.finish(id).expect("in flight");
        queue.retry_at(second, start + Duration::from_secs(10));
        let (due, latest) = queue.pop_latest_retry().expect("waiting");
        assert_eq!((latest.id, due), (0, start + Duration::from_secs(60)));
        assert_eq!(queue.pop_last_ready().map(|item| item.id), Some(3));
        assert_eq!(ids(&queue.drain_waiting()), vec![2, 1], "the line, then the retries");
        assert!(queue.is_empty());
    }

    #[test]
    fn an_event_suspected_of_breaking_the_client_goes_alone() {
        let start = Instant::now();
        for per_user in [false, true] {
            let mut queue = filled(per_user, &[], start);
            queue.push(item(0, "a", start));
            queue.push(Item {
                alone: true,
                ..item(1, "b", start)
            });
            queue.push(item(2, "c", start));
            let ten = Batching::events(10);
            let sent: Vec<Vec<u32>> = std::iter::from_fn(|| started(&mut queue, &ten).map(|(_, ids)| ids)).collect();
            assert_eq!(sent, vec![vec![0], vec![1], vec![2]], "per user: {per_user}");
        }
    }
}
