//! `switchyard replay`: archived events of a source sent again through destination
//! actors (a newly added tool, say), with a rate limit, a filter, a progress bar, and a
//! checkpoint so an interrupted replay resumes where it stopped.

use std::collections::HashSet;
use std::io::Write;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use governor::{Quota, RateLimiter};
use indicatif::{ProgressBar, ProgressStyle};
use switchyard_actors::destination::gate::Gate;
use switchyard_actors::transform::Condition;
use switchyard_actors::{Ack, Budget, Completion, DeadLetter, DestinationActor, Routed, Transform};
use switchyard_archive::export::{Range, events, objects};
use switchyard_schemas::record::decode_value;

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[arg(long, short, env = "SWITCHYARD_CONFIG", default_value = "examples/switchyard.toml")]
    config: PathBuf,
    #[arg(long)]
    source: String,
    /// Only this destination (it must receive the source); all of the source's when absent.
    #[arg(long)]
    destination: Option<String>,
    /// RFC 3339 time of receipt, inclusive.
    #[arg(long)]
    from: Option<DateTime<Utc>>,
    /// RFC 3339 time of receipt, exclusive.
    #[arg(long)]
    to: Option<DateTime<Utc>>,
    /// Only events this VRL condition holds for, e.g. '.event == "Order Completed"'.
    #[arg(long = "where")]
    condition: Option<String>,
    /// Replaces each event's `integrations` object, e.g. '{"All": false, "Warehouse": true}'
    /// to send to one tool events that had turned it off. Without it, each event's own
    /// `integrations` and consent decide, as they did when it was first routed.
    #[arg(long, value_parser = parse_integrations)]
    integrations: Option<switchyard_schemas::event::Object>,
    /// Events per second, at most (per destination).
    #[arg(long)]
    rate: Option<NonZeroU32>,
    /// Count what would be sent; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Objects already replayed, one per line; a rerun skips them.
    #[arg(long, default_value = ".switchyard-replay")]
    checkpoint: PathBuf,
}

fn parse_integrations(text: &str) -> Result<switchyard_schemas::event::Object, String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(object)) => Ok(object),
        Ok(_) => Err("must be a JSON object, e.g. '{\"All\": false, \"Mixpanel\": true}'".into()),
        Err(error) => Err(format!("not JSON: {error}")),
    }
}

/// Counts finished events of one object.
#[derive(Clone, Default)]
struct Finished(Arc<AtomicUsize>);

impl Completion for Finished {
    fn complete(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Where a replayed event a destination refuses ends up: counted and logged (a replay
/// is run by hand; the refusals are in its summary).
#[derive(Default)]
struct Refusals(Arc<AtomicUsize>);

impl Actor for Refusals {
    type Context = Context<Self>;
}

impl Handler<DeadLetter> for Refusals {
    type Result = ();

    fn handle(&mut self, letter: DeadLetter, _: &mut Self::Context) {
        self.0.fetch_add(1, Ordering::SeqCst);
        tracing::warn!(
            destination_id = letter.destination_id.as_deref().unwrap_or_default(),
            message_id = letter.message_id.as_deref().unwrap_or_default(),
            reason = %letter.reason,
            "replayed event refused"
        );
        letter.ack.done();
    }
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let archive = config.archive_section(&args.config)?;
    let egress = Arc::new(config.egress.clone());
    let destinations: Vec<_> = config
        .destinations
        .iter()
        .filter(|d| d.sources.contains(&args.source))
        .filter(|d| args.destination.as_ref().is_none_or(|id| d.id == *id))
        .cloned()
        .collect();
    if destinations.is_empty() {
        bail!(
            "no destination receives source {:?}{}",
            args.source,
            args.destination
                .as_ref()
                .map_or(String::new(), |id| format!(" under the id {id:?}"))
        );
    }
    let condition = match &args.condition {
        Some(text) => Some(Condition::compile(text).map_err(|error| anyhow::anyhow!("--where: {error}"))?),
        None => None,
    };
    let keys = crate::archive::key_ring(&config, &archive)?;
    let store = keys.primary().clone();
    let done: HashSet<String> = std::fs::read_to_string(&args.checkpoint)
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default();
    let range = Range {
        from: args.from,
        to: args.to,
    };
    System::new().block_on(async move {
        let identities = keys.identities(&args.source).await?;
        let all = objects(store.as_ref(), &archive.prefix, &args.source, range).await?;
        let todo: Vec<_> = all.into_iter().filter(|o| !done.contains(o.as_ref())).collect();
        let refused = Arc::new(AtomicUsize::new(0));
        let refusals = Refusals(refused.clone()).start();
        let mut actors = Vec::new();
        let gates: Vec<Gate> = destinations.iter().map(Gate::new).collect();
        for destination in &destinations {
            let transform = Transform::compile(&destination.transforms)
                .map_err(|error| anyhow::anyhow!("destination {}: {error}", destination.id))?;
            // The replay waits for room as the router does: a destination is sent no
            // more than it holds.
            let budget = Budget::new(destination.max_buffered_events);
            let actor = DestinationActor::new(
                &args.source,
                destination.clone(),
                refusals.clone().recipient(),
                budget.clone(),
                egress.clone(),
            )
            .with_transform(transform);
            actors.push((actor.start(), budget));
        }
        // Let them start inside the runtime: an actor first polled while the runtime
        // shuts down (nothing to replay) can't set its timers.
        actix::clock::sleep(Duration::from_millis(1)).await;
        let limiter = args.rate.map(|rate| RateLimiter::direct(Quota::per_second(rate)));
        let bar = ProgressBar::new(todo.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} objects, {msg} [{elapsed_precise}, eta {eta}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let (mut sent, mut skipped, mut gated) = (0usize, 0usize, 0usize);
        let mut checkpoint = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.checkpoint)
            .with_context(|| format!("cannot open the checkpoint {}", args.checkpoint.display()))?;
        for location in todo {
            let finished = Finished::default();
            let mut handed = 0;
            for line in events(store.as_ref(), &identities, &location, range).await? {
                if let Some(condition) = &condition {
                    let json: serde_json::Value = serde_json::from_slice(&line)?;
                    if !condition.matches(&json).map_err(|e| anyhow::anyhow!("--where: {e}"))? {
                        skipped += 1;
                        continue;
                    }
                }
                let mut event = decode_value(&line).map_err(|e| anyhow::anyhow!("{location}: {e}"))?;
                if let Some(integrations) = &args.integrations {
                    event.common_mut().integrations = Some(integrations.clone());
                }
                let event = Arc::new(event);
                for ((actor, budget), gate) in actors.iter().zip(&gates) {
                    if gate.check(&event).is_some() {
                        gated += 1;
                        continue;
                    }
                    if args.dry_run {
                        handed += 1;
                        continue;
                    }
                    if let Some(limiter) = &limiter {
                        limiter.until_ready().await;
                    }
                    let routed = Routed {
                        source_id: Arc::from(args.source.as_str()),
                        event: event.clone(),
                        ack: Ack::new(finished.clone()),
                        parked: None,
                        trace: None,
                        permit: budget.take(1).await,
                    };
                    actor.send(routed).await?;
                    handed += 1;
                }
            }
            if !args.dry_run {
                // The object counts as replayed once every destination finished its events.
                while finished.0.load(Ordering::SeqCst) < handed {
                    actix::clock::sleep(Duration::from_millis(20)).await;
                }
                writeln!(checkpoint, "{location}")?;
            }
            sent += handed;
            bar.set_message(format!("{sent} events"));
            bar.inc(1);
        }
        bar.finish();
        let verb = if args.dry_run { "would send" } else { "sent" };
        println!(
            "{verb} {sent} events to {} destination(s); {skipped} left out by --where; \
             {gated} not for a destination by their integrations or consent; {} refused",
            actors.len(),
            refused.load(Ordering::SeqCst)
        );
        Ok::<(), anyhow::Error>(())
    })
}
