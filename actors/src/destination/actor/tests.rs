use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use switchyard_schemas::Event;

use super::park::{PARK_MAX_WAIT, PARK_MIN_WAIT, park_wait};
use super::*;
use crate::destination::config::{DestinationKind, Ordering as Order, RetryConfig, WebhookConfig};
use crate::destination::delivery::{Answer, Batching, DeliveryError};
use crate::test_support::{Collect, Count};

/// The test receivers listen on loopback, which the operator allows here.
fn local_egress() -> Arc<EgressPolicy> {
    Arc::new(
        EgressPolicy::default()
            .allowing(&["127.0.0.0/8"])
            .allowing_plain_http(&["127.0.0.1"]),
    )
}

/// A webhook nobody listens on, retried only after a long wait: events pile up.
fn unreachable_webhook() -> DestinationConfig {
    DestinationConfig {
        id: "down".into(),
        sources: vec!["web".into()],
        kind: DestinationKind::Webhook(WebhookConfig {
            url: "http://127.0.0.1:1/hook".into(),
            signing_secret: None,
            bearer_token: None,
            basic_auth: None,
            headers: Default::default(),
            timeout_ms: 1_000,
            batch_max_events: 1,
            tls: Default::default(),
        }),
        retry: RetryConfig {
            min_backoff_ms: 60_000,
            max_backoff_ms: 60_000,
            ..RetryConfig::default()
        },
        concurrency: 1,
        max_buffered_events: 100,
        breaker_failures: 100,
        breaker_cooldown_ms: 1_000,
        stall_after_secs: 120,
        ordering: Order::None,
        integration_name: None,
        honor_integrations: true,
        consent_categories: Vec::new(),
        require_consent: false,
        transforms: Vec::new(),
    }
}

fn routed(message_id: &str, completed: &Count) -> Routed {
    let event: Event = serde_json::from_value(
        serde_json::json!({"type": "track", "userId": "u", "event": "e", "messageId": message_id}),
    )
    .expect("sample parses");
    Routed {
        source_id: Arc::from("web"),
        event: Arc::new(event),
        ack: Ack::new(completed.clone()),
        parked: None,
        trace: None,
        permit: Permit::none(),
    }
}

async fn stats_when(actor: &Addr<DestinationActor>, done: impl Fn(&DestinationStats) -> bool) -> DestinationStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = actor.send(GetDestinationStats).await.expect("alive");
        if done(&stats) || Instant::now() > deadline {
            return stats;
        }
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
}

#[actix::test]
async fn a_failing_destination_with_its_budget_spent_parks_what_waits_for_a_retry() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let parking = Collect(seen.clone()).start();
    let dead = Collect(seen.clone()).start();
    let completed = Count::default();
    let config = DestinationConfig {
        max_buffered_events: 4,
        ..unreachable_webhook()
    };
    let budget = Budget::new(4);
    let actor = DestinationActor::new("web", config, dead.clone().recipient(), budget.clone(), local_egress())
        .with_parking(parking.recipient())
        .start();
    for i in 0..4 {
        let mut event = routed(&format!("m{i}"), &completed);
        event.permit = budget.take(1).await;
        actor.send(event).await.expect("alive");
    }
    // Nobody listens: each attempt fails and waits about a minute (with jitter) for
    // its retry. Once the budget was spent and an event waiting, the destination
    // was failing with no room: the event due last went to the retry topic, making
    // room for one, and nothing more was parked while there was room.
    let stats = stats_when(&actor, |stats| stats.retried == 4).await;
    let parked = seen.lock().expect("not poisoned").clone();
    assert_eq!(parked.len(), 1, "{parked:?} {stats:?}");
    assert!(parked[0].starts_with("parked: m"), "{parked:?}");
    assert_eq!((stats.parked, stats.buffered), (1, 3));
    assert_eq!(completed.0.load(Ordering::SeqCst), 1, "a parked event is finished here");
    let room = budget.try_take(1).expect("the parked event's room is free");
    let mut event = routed("m4", &completed);
    event.permit = room;
    actor.send(event).await.expect("alive");
    let stats = stats_when(&actor, |stats| stats.parked == 2).await;
    let parked = seen.lock().expect("not poisoned").clone();
    assert_eq!(parked.len(), 2, "{parked:?} {stats:?}");
    assert!(
        parked[1] != parked[0] && parked[1] != "parked: m4",
        "m4 is being tried; one of those waiting goes: {parked:?}"
    );

    // Back from the retry topic past its retry window: the next failure dead-letters it.
    let mut back = routed("m9", &completed);
    back.parked = Some(Parked {
        attempts: 7,
        parks: 1,
        first_seen: SystemTime::now() - Duration::from_secs(5 * 3600),
        last_error: Some("connect refused".into()),
    });
    let retired_config = DestinationConfig {
        id: "down-2".into(),
        retry: RetryConfig {
            min_backoff_ms: 1,
            max_backoff_ms: 1,
            ..RetryConfig::default()
        },
        ..unreachable_webhook()
    };
    let fresh = DestinationActor::new(
        "web",
        retired_config,
        dead.recipient(),
        Budget::unbounded(),
        local_egress(),
    )
    .start();
    fresh.send(back).await.expect("alive");
    let deadline = Instant::now() + Duration::from_secs(5);
    while completed.0.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    let seen = seen.lock().expect("not poisoned").clone();
    let dead: Vec<&String> = seen.iter().filter(|s| s.starts_with("dead: ")).collect();
    assert_eq!(dead.len(), 1, "{seen:?}");
    assert!(dead[0].contains("retry window"), "{dead:?}");
    let stats = fresh.send(GetDestinationStats).await.expect("alive");
    assert_eq!(stats.dead_lettered, 1);
}

/// A local HTTP endpoint whose first connection never gets an answer; later ones get 200.
fn hangs_once() -> std::net::SocketAddr {
    local_webhook(true, Duration::ZERO)
}

/// A local HTTP endpoint answering 200 to each request after `delay`; with
/// `hang_first`, its first connection never gets an answer.
fn local_webhook(hang_first: bool, delay: Duration) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (index, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            if hang_first && index == 0 {
                held.push(stream);
                continue;
            }
            std::thread::spawn(move || {
                let mut buffer = [0u8; 65536];
                let mut request = Vec::new();
                while let Ok(read) = stream.read(&mut buffer) {
                    if read == 0 {
                        break;
                    }
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            std::thread::sleep(delay);
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                            request.clear();
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn an_event_parked_again_stays_away_longer_each_time_up_to_a_cap() {
    let waits: Vec<Duration> = (0..12)
        .map(|parks| park_wait(parks, Duration::ZERO, Duration::ZERO))
        .collect();
    assert_eq!(waits[0], PARK_MIN_WAIT);
    assert_eq!(waits[3], PARK_MIN_WAIT * 8);
    assert!(waits.windows(2).all(|pair| pair[0] <= pair[1]), "{waits:?}");
    assert_eq!(waits[11], PARK_MAX_WAIT);
    assert_eq!(park_wait(u32::MAX, Duration::ZERO, Duration::ZERO), PARK_MAX_WAIT);
    let reopens = Duration::from_secs(30);
    assert_eq!(
        park_wait(0, Duration::from_secs(2), reopens),
        reopens,
        "not before the breaker reopens"
    );
    assert_eq!(
        park_wait(0, Duration::from_secs(40), reopens),
        Duration::from_secs(40),
        "nor before its retry"
    );
}

#[actix::test]
async fn a_healthy_destination_slower_than_its_sender_paces_it_and_parks_nothing() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let parking = Collect(seen.clone()).start();
    let dead = Collect(seen.clone()).start();
    let completed = Count::default();
    let mut config = DestinationConfig {
        max_buffered_events: 2,
        ..unreachable_webhook()
    };
    if let DestinationKind::Webhook(webhook) = &mut config.kind {
        webhook.url = format!("http://{}/hook", local_webhook(false, Duration::from_millis(50)));
    }
    let budget = Budget::new(2);
    let actor = DestinationActor::new("web", config, dead.recipient(), budget.clone(), local_egress())
        .with_parking(parking.recipient())
        .start();
    let started = Instant::now();
    for i in 0..8 {
        let mut event = routed(&format!("m{i}"), &completed);
        event.permit = budget.take(1).await;
        actor.send(event).await.expect("alive");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the sender waited for room: 8 events, 2 at a time, 50 ms each"
    );
    let stats = stats_when(&actor, |stats| stats.delivered == 8).await;
    assert_eq!((stats.delivered, stats.parked), (8, 0), "{stats:?}");
    assert!(
        seen.lock().expect("not poisoned").is_empty(),
        "nothing parked or dead-lettered"
    );
    assert_eq!(completed.0.load(Ordering::SeqCst), 8);
    assert_eq!(budget.held(), 0, "every permit came back");
}

#[actix::test]
async fn a_stalled_request_restarts_the_client_and_its_events_are_sent_again() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dead = Collect(seen.clone()).start();
    let completed = Count::default();
    let mut config = unreachable_webhook();
    if let DestinationKind::Webhook(webhook) = &mut config.kind {
        webhook.url = format!("http://{}/hook", hangs_once());
        webhook.timeout_ms = 600_000;
    }
    config.stall_after_secs = 1;
    let actor = DestinationActor::new("web", config, dead.recipient(), Budget::new(100), local_egress()).start();
    actor.send(routed("m1", &completed)).await.expect("alive");
    let deadline = Instant::now() + Duration::from_secs(15);
    while completed.0.load(Ordering::SeqCst) < 1 && Instant::now() < deadline {
        actix::clock::sleep(Duration::from_millis(50)).await;
    }
    let stats = actor.send(GetDestinationStats).await.expect("alive");
    assert_eq!(
        completed.0.load(Ordering::SeqCst),
        1,
        "delivered after the restart: {stats:?}"
    );
    assert_eq!((stats.stalls, stats.restarts, stats.delivered), (1, 1, 1), "{stats:?}");
    assert!(seen.lock().expect("not poisoned").is_empty(), "nothing dead-lettered");
}

#[actix::test]
async fn a_replaced_destination_hands_its_waiting_events_to_the_replacement() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let replacement = Collect(seen.clone()).start();
    let dead = Collect(seen.clone()).start();
    let completed = Count::default();
    let actor = DestinationActor::new(
        "web",
        unreachable_webhook(),
        dead.recipient(),
        Budget::new(100),
        local_egress(),
    )
    .start();
    for i in 0..3 {
        actor.send(routed(&format!("m{i}"), &completed)).await.expect("alive");
    }
    // Let the connection attempts fail and the events move to their (long) retry wait.
    let deadline = Instant::now() + Duration::from_secs(10);
    while actor.send(GetDestinationStats).await.expect("alive").retried < 3 && Instant::now() < deadline {
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        completed.0.load(Ordering::SeqCst),
        0,
        "nothing is finished while waiting to retry"
    );

    actor
        .send(Retire {
            forward_to: Some(replacement.recipient()),
        })
        .await
        .expect("alive");
    let deadline = Instant::now() + Duration::from_secs(5);
    while completed.0.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    let mut got = seen.lock().expect("not poisoned").clone();
    got.sort();
    assert_eq!(
        got,
        vec!["m0", "m1", "m2"],
        "moved to the replacement, none dead-lettered"
    );
    assert_eq!(completed.0.load(Ordering::SeqCst), 3);
}

/// A client that answers from a script, one outcome per request, and records the
/// messageIds of each request.
struct Scripted {
    answers: Arc<Mutex<std::collections::VecDeque<Answer>>>,
    requests: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Delivery for Scripted {
    fn batching(&self) -> Batching {
        Batching::events(10)
    }

    fn deliver(&self, _: Arc<str>, events: Vec<Arc<Event>>) -> futures::future::LocalBoxFuture<'static, Answer> {
        let ids = events
            .iter()
            .map(|e| e.message_id().unwrap_or_default().to_string())
            .collect();
        self.requests.lock().expect("not poisoned").push(ids);
        let answer = self.answers.lock().expect("not poisoned").pop_front();
        Box::pin(futures::future::ready(answer.unwrap_or(Answer::Delivered)))
    }
}

#[actix::test]
async fn a_partial_answer_delivers_retries_and_dead_letters_each_event_as_answered() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dead = Collect(seen.clone()).start();
    let completed = Count::default();
    let retry_soon = RetryConfig {
        min_backoff_ms: 1,
        max_backoff_ms: 1,
        ..RetryConfig::default()
    };
    let config = DestinationConfig {
        retry: retry_soon,
        ..unreachable_webhook()
    };
    let answers = Arc::new(Mutex::new(std::collections::VecDeque::from([Answer::Partial(vec![
        (1, DeliveryError::retryable("throttled".into())),
        (3, DeliveryError::permanent("invalid event name".into())),
    ])])));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (script, sent) = (answers.clone(), requests.clone());
    let actor = DestinationActor::new("web", config, dead.recipient(), Budget::new(100), local_egress()).with_delivery(
        Box::new(move || -> Result<Box<dyn Delivery>, String> {
            Ok(Box::new(Scripted {
                answers: script.clone(),
                requests: sent.clone(),
            }))
        }),
    );
    let batch = (0..4).map(|i| routed(&format!("m{i}"), &completed)).collect();
    actor.start().send(RoutedBatch(batch)).await.expect("alive");
    let deadline = Instant::now() + Duration::from_secs(5);
    while completed.0.load(Ordering::SeqCst) < 4 && Instant::now() < deadline {
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(completed.0.load(Ordering::SeqCst), 4, "every event finished");
    let requests = requests.lock().expect("not poisoned").clone();
    assert_eq!(
        requests,
        vec![vec!["m0", "m1", "m2", "m3"], vec!["m1"]],
        "only the throttled event is sent again"
    );
    let seen = seen.lock().expect("not poisoned").clone();
    assert_eq!(
        seen,
        vec!["dead: invalid event name"],
        "the refused one, with its reason"
    );
}

#[actix::test]
async fn a_blackhole_takes_everything_through_the_same_queue() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dead = Collect(seen.clone()).start();
    let completed = Count::default();
    let config: DestinationConfig = serde_json::from_value(serde_json::json!({
        "id": "nowhere", "sources": ["web"], "kind": "blackhole"
    }))
    .expect("config");
    let actor = DestinationActor::new("web", config, dead.recipient(), Budget::new(100), local_egress()).start();
    let batch = (0..50).map(|i| routed(&format!("m{i}"), &completed)).collect();
    actor.send(RoutedBatch(batch)).await.expect("alive");
    let stats = stats_when(&actor, |stats| stats.delivered == 50).await;
    assert_eq!(
        (stats.received, stats.delivered, stats.buffered),
        (50, 50, 0),
        "{stats:?}"
    );
    assert_eq!(completed.0.load(Ordering::SeqCst), 50);
    assert!(seen.lock().expect("not poisoned").is_empty());
}
