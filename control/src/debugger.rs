//! The event debugger: a live, sampled view of a source's recent events for the admin
//! API (`GET /v1/workspaces/{workspace}/sources/{id}/debugger`, server-sent events).
//!
//! A tap (the ingest topic's reader, `switchyard_router::tap`) pushes each record of a
//! watched source here; every viewer gets its own sample of them. The tap runs only
//! while someone watches: the first viewer starts it, and it stops itself once nobody
//! has watched for a while, so an idle admin server reads nothing from Kafka. A viewer
//! that falls behind loses the oldest events (counted, never blocking the tap).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use tokio::sync::broadcast;

/// Events held for viewers that are behind; older ones are dropped and counted.
const BACKLOG: usize = 1024;

/// One record of a watched source, as read from the ingest topic.
#[derive(Debug, Clone)]
pub struct Tapped {
    pub source_id: Arc<str>,
    pub value: Bytes,
}

type StartTap = Box<dyn Fn(Arc<Debugger>) + Send + Sync>;

/// Shared by the admin API (viewers) and the tap (records).
pub struct Debugger {
    sender: broadcast::Sender<Tapped>,
    /// Viewers per source id.
    watched: Mutex<HashMap<String, usize>>,
    tap_running: AtomicBool,
    start_tap: StartTap,
    max_viewers: usize,
    /// How often an open stream sends its counts and checks that its viewer may still
    /// see the source (a revoked session or membership ends the stream).
    pub recheck_every: Duration,
}

impl std::fmt::Debug for Debugger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Debugger")
            .field("watched", &self.watched)
            .field("tap_running", &self.tap_running)
            .field("max_viewers", &self.max_viewers)
            .finish_non_exhaustive()
    }
}

/// Too many viewers on this server already.
#[derive(Debug, thiserror::Error)]
#[error("{0} event debugger streams are open on this server; close one and retry")]
pub struct Busy(pub usize);

impl Debugger {
    /// `start_tap` must start reading in the background and return at once; the tap
    /// calls [`Debugger::tap_stopped`] when it ends.
    pub fn new(
        max_viewers: usize,
        recheck_every: Duration,
        start_tap: impl Fn(Arc<Debugger>) + Send + Sync + 'static,
    ) -> Arc<Debugger> {
        Arc::new(Debugger {
            recheck_every,
            sender: broadcast::channel(BACKLOG).0,
            watched: Mutex::new(HashMap::new()),
            tap_running: AtomicBool::new(false),
            start_tap: Box::new(start_tap),
            max_viewers,
        })
    }

    /// For the tap: whether anyone watches this source (records of others are skipped).
    pub fn watching(&self, source_id: &str) -> bool {
        self.lock().contains_key(source_id)
    }

    /// For the tap: whether anyone watches at all.
    pub fn anyone_watching(&self) -> bool {
        !self.lock().is_empty()
    }

    /// For the tap: a record of a watched source.
    pub fn push(&self, source_id: &str, value: &[u8]) {
        // No receiver left is not an error: the viewer just went away.
        let _ = self.sender.send(Tapped {
            source_id: source_id.into(),
            value: Bytes::copy_from_slice(value),
        });
    }

    /// For the tap, as it ends. A viewer that arrived while it was deciding to stop
    /// would otherwise wait for nothing: start a new one for it.
    pub fn tap_stopped(self: &Arc<Self>) {
        self.tap_running.store(false, Ordering::SeqCst);
        if self.anyone_watching() {
            self.ensure_tap();
        }
    }

    /// A new viewer of the source: the tap starts if it isn't running.
    pub fn watch(self: &Arc<Self>, source_id: &str) -> Result<Viewer, Busy> {
        {
            let mut watched = self.lock();
            if watched.values().sum::<usize>() >= self.max_viewers {
                return Err(Busy(self.max_viewers));
            }
            *watched.entry(source_id.to_string()).or_default() += 1;
        }
        let viewer = Viewer {
            debugger: self.clone(),
            source_id: source_id.to_string(),
            receiver: self.sender.subscribe(),
        };
        self.ensure_tap();
        Ok(viewer)
    }

    fn ensure_tap(self: &Arc<Self>) {
        if !self.tap_running.swap(true, Ordering::SeqCst) {
            tracing::info!("event debugger tap starting");
            (self.start_tap)(self.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.watched.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a viewer receives next.
#[derive(Debug)]
pub enum Seen {
    Event(Bytes),
    /// This many events went by while the viewer was behind.
    Missed(u64),
}

/// One open debugger stream; dropping it stops the watch.
#[derive(Debug)]
pub struct Viewer {
    debugger: Arc<Debugger>,
    source_id: String,
    receiver: broadcast::Receiver<Tapped>,
}

impl Viewer {
    /// The next record of this viewer's source.
    pub async fn next(&mut self) -> Seen {
        loop {
            match self.receiver.recv().await {
                Ok(tapped) if *tapped.source_id == *self.source_id => return Seen::Event(tapped.value),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => return Seen::Missed(missed),
                // The debugger holds the sender for as long as a viewer holds the debugger.
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let mut watched = self.debugger.lock();
        if let Some(count) = watched.get_mut(&self.source_id) {
            *count -= 1;
            if *count == 0 {
                watched.remove(&self.source_id);
            }
        }
    }
}

/// A viewer's sample: each event kept with probability `rate`, and at most
/// `per_second` a second so a busy source can't flood a browser.
#[derive(Debug)]
pub struct Sampler {
    rate: f64,
    per_second: u32,
    window: Instant,
    sent_in_window: u32,
}

impl Sampler {
    pub fn new(rate: f64, per_second: u32) -> Sampler {
        Sampler {
            rate,
            per_second,
            window: Instant::now(),
            sent_in_window: 0,
        }
    }

    pub fn keep(&mut self) -> bool {
        if self.rate < 1.0 && rand::random::<f64>() >= self.rate {
            return false;
        }
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.sent_in_window = 0;
        }
        if self.sent_in_window >= self.per_second {
            return false;
        }
        self.sent_in_window += 1;
        true
    }
}

/// Checks, every [`Debugger::recheck_every`], that the viewer may still watch; the
/// error is the reason told to the viewer as the stream ends.
pub type Recheck = Box<dyn FnMut() -> futures::future::BoxFuture<'static, Result<(), String>>>;

/// The server-sent-event stream of one viewer: `event: event` for each sampled event
/// (its JSON on one line, `id:` its messageId), `event: missed` when the viewer fell
/// behind, `event: stats` with the counts every [`Debugger::recheck_every`] (which also
/// keeps proxies from closing a quiet stream), `event: end` with the reason when the
/// viewer may no longer watch.
pub fn stream(
    viewer: Viewer,
    sampler: Sampler,
    recheck: Recheck,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let every = viewer.debugger.recheck_every;
    let hello = frame(
        "hello",
        None,
        &serde_json::json!({"source": viewer.source_id, "sample": sampler.rate, "per_second": sampler.per_second}),
    );
    let state = Watch {
        viewer,
        sampler,
        recheck,
        ticker: tokio::time::interval_at(tokio::time::Instant::now() + every, every),
        counts: Counts::default(),
        hello: Some(hello),
        ended: false,
    };
    futures::stream::unfold(state, |mut watch| async move {
        let frame = watch.next_frame().await?;
        Some((Ok(frame), watch))
    })
}

#[derive(Debug, Default, serde::Serialize)]
struct Counts {
    /// Events of the source read since the stream opened.
    seen: u64,
    sent: u64,
    /// Left out by the sample or the per-second cap.
    skipped: u64,
    /// Gone by while this viewer was behind.
    missed: u64,
}

struct Watch {
    viewer: Viewer,
    sampler: Sampler,
    recheck: Recheck,
    ticker: tokio::time::Interval,
    counts: Counts,
    hello: Option<Bytes>,
    ended: bool,
}

impl Watch {
    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        if let Some(hello) = self.hello.take() {
            return Some(hello);
        }
        loop {
            tokio::select! {
                seen = self.viewer.next() => match seen {
                    Seen::Event(value) => {
                        self.counts.seen += 1;
                        if !self.sampler.keep() {
                            self.counts.skipped += 1;
                            continue;
                        }
                        // Re-serialized: a record produced straight into Kafka may hold
                        // newlines, which would break the event-stream framing.
                        let Ok(event) = serde_json::from_slice::<serde_json::Value>(&value) else {
                            self.counts.skipped += 1;
                            continue;
                        };
                        self.counts.sent += 1;
                        let id = event.get("messageId").and_then(|id| id.as_str()).map(str::to_string);
                        return Some(frame("event", id.as_deref(), &event));
                    }
                    Seen::Missed(missed) => {
                        self.counts.missed += missed;
                        return Some(frame("missed", None, &serde_json::json!({"missed": missed})));
                    }
                },
                _ = self.ticker.tick() => {
                    return Some(match (self.recheck)().await {
                        Ok(()) => frame("stats", None, &serde_json::json!(self.counts)),
                        Err(reason) => {
                            self.ended = true;
                            frame("end", None, &serde_json::json!({"reason": reason}))
                        }
                    });
                }
            }
        }
    }
}

fn frame(kind: &str, id: Option<&str>, data: &serde_json::Value) -> Bytes {
    let mut text = format!("event: {kind}\n");
    // An id with a line break would end the field early; such an id is left out.
    if let Some(id) = id.filter(|id| !id.contains(['\n', '\r'])) {
        text.push_str(&format!("id: {id}\n"));
    }
    text.push_str(&format!("data: {data}\n\n"));
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn counting() -> (Arc<Debugger>, Arc<AtomicUsize>) {
        let starts = Arc::new(AtomicUsize::new(0));
        let counter = starts.clone();
        let debugger = Debugger::new(2, Duration::from_millis(100), move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        (debugger, starts)
    }

    #[tokio::test]
    async fn a_viewer_sees_only_its_source_and_the_tap_starts_once() {
        let (debugger, starts) = counting();
        let mut viewer = debugger.watch("web").expect("room");
        let _other = debugger.watch("ios").expect("room");
        assert_eq!(starts.load(Ordering::SeqCst), 1, "one tap for every viewer");
        assert!(debugger.watching("web") && debugger.watching("ios") && !debugger.watching("android"));
        debugger.push("ios", b"{\"n\":1}");
        debugger.push("web", b"{\"n\":2}");
        match viewer.next().await {
            Seen::Event(value) => assert_eq!(&value[..], b"{\"n\":2}"),
            other => panic!("expected the web event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn viewers_are_capped_and_leaving_frees_the_place() {
        let (debugger, _) = counting();
        let first = debugger.watch("web").expect("room");
        let _second = debugger.watch("web").expect("room");
        assert!(debugger.watch("web").is_err(), "a third viewer over the cap of 2");
        drop(first);
        assert!(debugger.watch("web").is_ok());
    }

    #[tokio::test]
    async fn a_stopped_tap_restarts_for_a_viewer_that_is_still_there() {
        let (debugger, starts) = counting();
        let viewer = debugger.watch("web").expect("room");
        debugger.tap_stopped();
        assert_eq!(starts.load(Ordering::SeqCst), 2, "restarted for the waiting viewer");
        drop(viewer);
        debugger.tap_stopped();
        assert_eq!(starts.load(Ordering::SeqCst), 2, "nobody watching: stays stopped");
        assert!(!debugger.anyone_watching());
    }

    #[tokio::test]
    async fn a_viewer_behind_is_told_how_many_it_missed() {
        let (debugger, _) = counting();
        let mut viewer = debugger.watch("web").expect("room");
        for _ in 0..BACKLOG + 10 {
            debugger.push("web", b"{}");
        }
        match viewer.next().await {
            Seen::Missed(missed) => assert_eq!(missed, 10),
            other => panic!("expected a missed count, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_stream_frames_events_and_ends_when_access_is_revoked() {
        use futures::StreamExt;
        let (debugger, _) = counting();
        let viewer = debugger.watch("web").expect("room");
        let allowed = Arc::new(AtomicBool::new(true));
        let still = allowed.clone();
        let recheck: Recheck = Box::new(move || {
            let ok = still.load(Ordering::SeqCst);
            Box::pin(async move { if ok { Ok(()) } else { Err("revoked".to_string()) } })
        });
        let mut frames = Box::pin(stream(viewer, Sampler::new(1.0, 100), recheck));
        let text = |bytes: Bytes| String::from_utf8(bytes.to_vec()).expect("utf-8");
        let hello = text(frames.next().await.expect("hello").expect("frame"));
        assert!(
            hello.starts_with("event: hello\n") && hello.contains("\"source\":\"web\""),
            "{hello}"
        );
        debugger.push("web", b"{\"messageId\":\"m-1\",\n \"type\":\"track\"}");
        let mut next_of = async |kind: &str| loop {
            let frame = text(frames.next().await.expect("a frame").expect("frame"));
            if frame.starts_with(&format!("event: {kind}\n")) {
                return frame;
            }
            assert!(frame.starts_with("event: stats\n"), "unexpected {frame}");
        };
        let event = next_of("event").await;
        assert_eq!(
            event,
            "event: event\nid: m-1\ndata: {\"messageId\":\"m-1\",\"type\":\"track\"}\n\n"
        );
        allowed.store(false, Ordering::SeqCst);
        let end = next_of("end").await;
        assert_eq!(end, "event: end\ndata: {\"reason\":\"revoked\"}\n\n");
        assert!(frames.next().await.is_none(), "the stream closes after its end event");
    }

    #[test]
    fn the_sampler_keeps_at_most_per_second_and_about_the_rate() {
        let mut capped = Sampler::new(1.0, 5);
        assert_eq!((0..100).filter(|_| capped.keep()).count(), 5);
        let mut sampled = Sampler::new(0.1, 1_000_000);
        let kept = (0..20_000).filter(|_| sampled.keep()).count();
        assert!((1_500..2_500).contains(&kept), "kept {kept} of 20000 at 10%");
    }
}
