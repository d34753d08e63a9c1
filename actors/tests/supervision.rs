//! Supervision: one source feeding three destinations, one healthy, one whose client
//! panics on a chosen event, one whose client hangs on a chosen event. The healthy one
//! delivers everything while the others are broken, the broken ones resume (the
//! panicking client is rebuilt, the hung request abandoned and sent again), and every
//! messageId is accounted for: delivered, or dead-lettered with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use switchyard_actors::destination::{Answer, Batching, Delivery, DestinationConfig};
use switchyard_actors::{
    Ack, Budget, Completion, DeadLetter, DedupSettings, DestinationActor, DestinationStats, EgressPolicy,
    GetDestinationStats, Inbound, Route, SourceSupervisor,
};
use switchyard_schemas::Event;
use switchyard_schemas::record::RecordHeaders;

const EVENTS: usize = 300;
const POISON: &str = "m13";
const HANGS_ON: &str = "m21";

/// What a destination received, by messageId, shared with the test.
type Received = Arc<Mutex<BTreeMap<String, usize>>>;

#[derive(Clone, Copy)]
enum Behaviour {
    Healthy,
    /// Panics whenever a request carries [`POISON`].
    Panics,
    /// Never answers the first request carrying [`HANGS_ON`].
    HangsOnce,
}

struct Client {
    behaviour: Behaviour,
    received: Received,
    hung: Arc<AtomicUsize>,
}

impl Delivery for Client {
    fn batching(&self) -> Batching {
        Batching::events(10)
    }

    fn deliver(&self, _: Arc<str>, events: Vec<Arc<Event>>) -> LocalBoxFuture<'static, Answer> {
        let ids: Vec<String> = events
            .iter()
            .map(|event| event.message_id().unwrap_or_default().to_string())
            .collect();
        match self.behaviour {
            Behaviour::Panics if ids.iter().any(|id| id == POISON) => {
                panic!("the encoder can't take {POISON}")
            }
            Behaviour::HangsOnce
                if ids.iter().any(|id| id == HANGS_ON) && self.hung.fetch_add(1, Ordering::SeqCst) == 0 =>
            {
                return Box::pin(futures::future::pending());
            }
            _ => {}
        }
        let mut received = self.received.lock().expect("not poisoned");
        for id in ids {
            *received.entry(id).or_default() += 1;
        }
        Box::pin(futures::future::ready(Answer::Delivered))
    }
}

struct DeadLetters(Arc<Mutex<Vec<(String, String)>>>);

impl Actor for DeadLetters {
    type Context = Context<Self>;
}

impl Handler<DeadLetter> for DeadLetters {
    type Result = ();
    fn handle(&mut self, letter: DeadLetter, _: &mut Self::Context) {
        let id = letter.message_id.clone().unwrap_or_default();
        let destination = letter.destination_id.clone().unwrap_or_default();
        self.0
            .lock()
            .expect("not poisoned")
            .push((destination, format!("{id}: {}", letter.reason)));
        letter.ack.done();
    }
}

#[derive(Clone, Default)]
struct Count(Arc<AtomicUsize>);

impl Completion for Count {
    fn complete(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn destination(id: &str) -> DestinationConfig {
    serde_json::from_value(serde_json::json!({
        "id": id, "sources": ["web"], "kind": "blackhole",
        "stall_after_secs": 3,
        "retry": {"min_backoff_ms": 10, "max_backoff_ms": 50}
    }))
    .expect("destination")
}

struct Running {
    addr: Addr<DestinationActor>,
    received: Received,
}

fn start(id: &str, behaviour: Behaviour, dead: &Addr<DeadLetters>, routes: &mut Vec<Route>) -> Running {
    let received = Received::default();
    let budget = Budget::new(1_000);
    let (client_received, hung) = (received.clone(), Arc::new(AtomicUsize::new(0)));
    let connect = move || -> Result<Box<dyn Delivery>, String> {
        Ok(Box::new(Client {
            behaviour,
            received: client_received.clone(),
            hung: hung.clone(),
        }))
    };
    let addr = DestinationActor::new(
        "web",
        destination(id),
        dead.clone().recipient(),
        budget.clone(),
        Arc::new(EgressPolicy::default()),
    )
    .with_delivery(Box::new(connect))
    .start();
    routes.push(Route {
        destination_id: id.into(),
        recipient: addr.clone().recipient(),
        budget,
    });
    Running { addr, received }
}

async fn stats(running: &Running) -> DestinationStats {
    running.addr.send(GetDestinationStats).await.expect("alive")
}

#[actix::test]
async fn a_panicking_and_a_hanging_destination_are_contained_and_resume_beside_a_healthy_one() {
    let letters = Arc::new(Mutex::new(Vec::new()));
    let dead = DeadLetters(letters.clone()).start();
    let mut routes = Vec::new();
    let healthy = start("healthy", Behaviour::Healthy, &dead, &mut routes);
    let panics = start("panics", Behaviour::Panics, &dead, &mut routes);
    let hangs = start("hangs", Behaviour::HangsOnce, &dead, &mut routes);
    let supervisor = SourceSupervisor::new("web", routes, dead.clone().recipient(), DedupSettings::default()).start();

    let completed = Count::default();
    let ids: BTreeSet<String> = (0..EVENTS).map(|i| format!("m{i}")).collect();
    for id in &ids {
        let value = serde_json::json!({"type": "track", "userId": format!("u{id}"), "event": "e", "messageId": id});
        let event: Event = serde_json::from_value(value.clone()).expect("event");
        let inbound = Inbound {
            headers: RecordHeaders::new("web", &event, None),
            value: serde_json::to_vec(&value).expect("json"),
            ack: Ack::new(completed.clone()),
        };
        supervisor.send(inbound).await.expect("alive");
    }

    // The healthy destination has everything while the hung request is still hung.
    let deadline = Instant::now() + Duration::from_secs(10);
    while healthy.received.lock().expect("not poisoned").len() < EVENTS && Instant::now() < deadline {
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    let (healthy_now, hangs_now) = (stats(&healthy).await, stats(&hangs).await);
    assert_eq!(healthy_now.delivered as usize, EVENTS, "{healthy_now:?}");
    assert_eq!(
        (hangs_now.stalls, hangs_now.in_flight > 0),
        (0, true),
        "the healthy one did not wait for the hung request: {hangs_now:?}"
    );

    // Every record is finished: each destination delivered or dead-lettered every event.
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed.0.load(Ordering::SeqCst) < EVENTS && Instant::now() < deadline {
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(completed.0.load(Ordering::SeqCst), EVENTS, "every record finished");

    let delivered = |running: &Running| -> BTreeSet<String> {
        running.received.lock().expect("not poisoned").keys().cloned().collect()
    };
    assert_eq!(delivered(&healthy), ids);
    assert_eq!(
        delivered(&hangs),
        ids,
        "the hung request was sent again after the stall"
    );
    let mut without_poison = ids.clone();
    without_poison.remove(POISON);
    assert_eq!(delivered(&panics), without_poison, "everything but the poison event");
    let letters = letters.lock().expect("not poisoned").clone();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, "panics");
    assert!(
        letters[0].1.starts_with(&format!(
            "{POISON}: the destination's client panicked on this event 3 times"
        )),
        "{letters:?}"
    );
    assert!(letters[0].1.contains("the encoder can't take"), "{letters:?}");

    let (healthy, panics, hangs) = (stats(&healthy).await, stats(&panics).await, stats(&hangs).await);
    assert_eq!(
        (healthy.restarts, healthy.panics, healthy.stalls, healthy.dead_lettered),
        (0, 0, 0, 0),
        "{healthy:?}"
    );
    assert!(panics.panics >= 3 && panics.restarts == panics.panics, "{panics:?}");
    assert_eq!((hangs.stalls, hangs.restarts, hangs.panics), (1, 1, 0), "{hangs:?}");
}
