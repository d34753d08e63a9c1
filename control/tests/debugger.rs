//! The event debugger's stream through the admin API, on SQLite and Postgres: what a
//! viewer sees, who may open it, how it is sampled, and that it ends when the viewer's
//! access does. Events are handed to the debugger as its Kafka tap would (the tap
//! itself runs against a real broker in cli/tests/control.rs).

mod support;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::{App, test, web};
use serde_json::{Value, json};
use support::{Backend, OWNER_PASSWORD, owned_workspace};
use switchyard_control::Role;
use switchyard_control::api::{ApiState, routes};
use switchyard_control::debugger::Debugger;
use switchyard_control::model::{Actor, NewMember, NewSource};

/// Reads a streaming body one server-sent event at a time.
struct Frames<B> {
    body: Pin<Box<B>>,
    pending: String,
}

impl<B: MessageBody> Frames<B>
where
    B::Error: std::fmt::Debug,
{
    fn new(body: B) -> Self {
        Frames {
            body: Box::pin(body),
            pending: String::new(),
        }
    }

    /// The next frame as (event kind, data); None when the stream ended.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let frame: String = self.pending.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|line| line.strip_prefix(name))
                        .map(str::to_string)
                };
                let kind = field("event: ").expect("every frame names its kind");
                let data = serde_json::from_str(&field("data: ").expect("data")).expect("data is JSON");
                return Some((kind, data));
            }
            let chunk = tokio::time::timeout(
                Duration::from_secs(10),
                std::future::poll_fn(|cx| self.body.as_mut().poll_next(cx)),
            )
            .await
            .expect("a frame within 10 s")?
            .expect("body chunk");
            self.pending.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }

    /// The next frame of this kind, skipping the periodic stats.
    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let (got, data) = self.next().await.expect("stream open");
            if got == kind {
                return data;
            }
            assert_eq!(got, "stats", "unexpected {got}: {data}");
        }
    }
}

#[actix_rt::test]
async fn a_source_s_events_stream_to_those_who_may_see_it_sampled_until_their_access_ends() {
    for backend in Backend::both().await {
        let control = Arc::new(backend.control(&age::x25519::Identity::generate()).await);
        let admin = Actor::local("setup");
        let ws = owned_workspace(&control, &admin).await.id;
        for id in ["web", "ios"] {
            let source: NewSource = serde_json::from_value(json!({"id": id})).expect("source");
            control.create_source(&admin, &ws, &source).await.expect("source");
        }
        let collaborator = NewMember {
            email: "collaborator@example.com".into(),
            role: Role::SourceCollaborator,
            sources: vec!["web".into()],
            password: Some(OWNER_PASSWORD.into()),
        };
        let collaborator_id = control
            .add_member(&admin, &ws, &collaborator)
            .await
            .expect("member")
            .user_id;
        let token = |email: &'static str| {
            let control = control.clone();
            async move { control.login(email, OWNER_PASSWORD).await.expect("login").token }
        };
        let (owner, collaborator) = (
            token("owner@example.com").await,
            token("collaborator@example.com").await,
        );
        let starts = Arc::new(AtomicUsize::new(0));
        let counter = starts.clone();
        let debugger = Debugger::new(8, Duration::from_millis(200), move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(ApiState {
                    control: control.clone(),
                    debugger: Some(debugger.clone()),
                    sso: None,
                }))
                .configure(routes),
        )
        .await;
        let open = |source: &str, query: &str, token: &str| {
            test::TestRequest::get()
                .uri(&format!("/v1/workspaces/{ws}/sources/{source}/debugger{query}"))
                .insert_header(("authorization", format!("Bearer {token}")))
                .to_request()
        };

        // Refusals come before any stream opens, each naming why.
        for (source, query, token, status, names) in [
            ("ios", "", collaborator.as_str(), 403, "role"),
            ("gone", "", owner.as_str(), 404, "gone"),
            ("web", "?sample=2", owner.as_str(), 400, "sample"),
            ("web", "?per_second=0", owner.as_str(), 400, "per_second"),
            ("web", "?speed=9", owner.as_str(), 400, "speed"),
        ] {
            let response = test::call_service(&app, open(source, query, token)).await;
            assert_eq!(response.status().as_u16(), status, "{source}{query}");
            let body: Value = test::read_body_json(response).await;
            assert!(body["message"].as_str().expect("message").contains(names), "{body}");
        }
        assert_eq!(starts.load(Ordering::SeqCst), 0, "no refused request started the tap");

        // The owner sees web's events, not ios's, as they arrive.
        let response = test::call_service(&app, open("web", "?per_second=100", &owner)).await;
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"text/event-stream"[..])
        );
        let mut owner_stream = Frames::new(response.into_body());
        assert_eq!(owner_stream.next_of("hello").await["source"], "web");
        assert_eq!(starts.load(Ordering::SeqCst), 1, "the first viewer started the tap");
        debugger.push("ios", br#"{"type":"track","messageId":"ios-1","event":"Opened"}"#);
        debugger.push("web", br#"{"type":"track","messageId":"web-1","event":"Viewed"}"#);
        let event = owner_stream.next_of("event").await;
        assert_eq!(event["messageId"], "web-1", "only the watched source's events");

        // A sample: at most per_second events a second, the rest counted as skipped.
        let response = test::call_service(&app, open("web", "?per_second=2", &collaborator)).await;
        assert_eq!(response.status().as_u16(), 200, "a collaborator sees its own source");
        let mut sampled = Frames::new(response.into_body());
        sampled.next_of("hello").await;
        for n in 0..50 {
            debugger.push("web", format!(r#"{{"type":"track","messageId":"s-{n}"}}"#).as_bytes());
        }
        assert_eq!(sampled.next_of("event").await["messageId"], "s-0");
        assert_eq!(sampled.next_of("event").await["messageId"], "s-1");
        // Counts go out every recheck; the first may come before all 50 were read.
        let mut stats = sampled.next_of("stats").await;
        while stats["seen"].as_u64() < Some(50) {
            stats = sampled.next_of("stats").await;
        }
        assert_eq!(
            (
                stats["seen"].as_u64(),
                stats["sent"].as_u64(),
                stats["skipped"].as_u64()
            ),
            (Some(50), Some(2), Some(48)),
            "{stats}"
        );

        // Taking the collaborator's membership away ends its stream with the reason.
        control
            .remove_member(&admin, &ws, &collaborator_id)
            .await
            .expect("remove");
        let end = sampled.next_of("end").await;
        assert!(end["reason"].as_str().expect("reason").contains("no longer"), "{end}");
        assert!(sampled.next().await.is_none(), "the stream closes after its end event");
        assert_eq!(
            owner_stream.next_of("event").await["messageId"],
            "s-0",
            "the owner still watches"
        );

        drop((owner_stream, sampled));
        assert!(!debugger.anyone_watching(), "closed streams stop watching");
        drop(app);
        let control = Arc::try_unwrap(control).expect("sole owner");
        backend.finish(control).await;
    }
}
