//! The fast path of a transform chain: when every step works on fields inside
//! `context`, `properties` or `traits` (or samples), only those parts are opened and
//! written back; the rest of the event is left as decoded. The result is the same as
//! the general path, which encodes the whole event to JSON, changes it and decodes it.

use serde_json::Value;
use switchyard_schemas::{Event, RawObject};

use super::ops::{Step, TransformError, Transformed, hash_at, redact_at, remove, rename, run, sampled};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Context,
    Properties,
    Traits,
}

fn section(path: &[String]) -> Option<Section> {
    if path.len() < 2 {
        return None;
    }
    match path[0].as_str() {
        "context" => Some(Section::Context),
        "properties" => Some(Section::Properties),
        "traits" => Some(Section::Traits),
        _ => None,
    }
}

/// Whether `steps` can run on sections alone.
pub(super) fn eligible(steps: &[Step]) -> bool {
    let all_in = |paths: &[Vec<String>]| paths.iter().all(|p| section(p).is_some());
    steps.iter().all(|step| match step {
        Step::Rename(from, to) => section(from).is_some() && section(from) == section(to),
        Step::DropFields(paths) | Step::Redact(paths) | Step::Hash(paths, _) => all_in(paths),
        Step::Sample(_) => true,
        Step::DropIf(_) | Step::AllowFields(_) => false,
    })
}

/// The event's sections, each opened on first use.
struct Open {
    event: Event,
    context: Option<Value>,
    body: Option<Value>,
}

impl Open {
    /// The body object a `properties` or `traits` path refers to on this event type;
    /// `Err` when the event keeps no such field (the general path decides then).
    fn body_slot(event: &mut Event, section: Section) -> Result<&mut Option<RawObject>, ()> {
        match (event, section) {
            (Event::Track(m), Section::Properties) => Ok(&mut m.properties),
            (Event::Page(m), Section::Properties) => Ok(&mut m.properties),
            (Event::Screen(m), Section::Properties) => Ok(&mut m.properties),
            (Event::Identify(m), Section::Traits) => Ok(&mut m.traits),
            (Event::Group(m), Section::Traits) => Ok(&mut m.traits),
            _ => Err(()),
        }
    }

    /// The value a path points into, and the rest of the path; `None` when the section
    /// is absent (every step is then a no-op for that path, as on the general path).
    fn target<'a>(&mut self, path: &'a [String]) -> Option<(&mut Value, &'a [String])> {
        let rest = &path[1..];
        match section(path)? {
            Section::Context => {
                if self.context.is_none() {
                    let map = self.event.common_mut().context.take()?;
                    self.context = Some(Value::Object(map));
                }
                self.context.as_mut().map(|value| (value, rest))
            }
            section => {
                if self.body.is_none() {
                    let raw = Self::body_slot(&mut self.event, section).ok()?.as_ref()?;
                    self.body = Some(Value::Object(raw.parse().ok()?));
                }
                self.body.as_mut().map(|value| (value, rest))
            }
        }
    }

    fn close(mut self) -> Result<Event, TransformError> {
        if let Some(Value::Object(map)) = self.context {
            self.event.common_mut().context = Some(map);
        }
        if let Some(Value::Object(map)) = self.body {
            let raw = RawObject::from_object(&map).map_err(|e| run("encode", e.to_string()))?;
            for section in [Section::Properties, Section::Traits] {
                if let Ok(slot) = Self::body_slot(&mut self.event, section) {
                    *slot = Some(raw);
                    break;
                }
            }
        }
        Ok(self.event)
    }
}

/// Runs eligible `steps`; gives the event back untouched when its type keeps a
/// section the steps name elsewhere (in its extra fields), for the general path.
#[expect(
    clippy::result_large_err,
    reason = "the event moves back once, on the rare fallback; boxing would cost every event"
)]
pub(super) fn apply(steps: &[Step], event: Event) -> Result<Result<Transformed, TransformError>, Event> {
    let wants = |wanted: Section| {
        steps.iter().any(|step| match step {
            Step::Rename(from, _) => section(from) == Some(wanted),
            Step::DropFields(paths) | Step::Redact(paths) | Step::Hash(paths, _) => {
                paths.iter().any(|p| section(p) == Some(wanted))
            }
            _ => false,
        })
    };
    let mut probe = event;
    for body in [Section::Properties, Section::Traits] {
        if wants(body) && Open::body_slot(&mut probe, body).is_err() {
            return Err(probe);
        }
    }
    let message_id = probe.message_id().unwrap_or_default().to_string();
    let mut open = Open {
        event: probe,
        context: None,
        body: None,
    };
    for step in steps {
        match step {
            Step::Sample(rate) => {
                if !sampled(&message_id, *rate) {
                    return Ok(Ok(Transformed::Filtered));
                }
            }
            Step::Rename(from, to) => {
                if let Some((value, rest)) = open.target(from)
                    && let Err(error) = rename(value, rest, &to[1..])
                {
                    return Ok(Err(error));
                }
            }
            Step::DropFields(paths) => {
                for path in paths {
                    if let Some((value, rest)) = open.target(path) {
                        remove(value, rest);
                    }
                }
            }
            Step::Hash(paths, salt) => {
                for path in paths {
                    if let Some((value, rest)) = open.target(path) {
                        hash_at(value, rest, salt);
                    }
                }
            }
            Step::Redact(paths) => {
                for path in paths {
                    if let Some((value, rest)) = open.target(path) {
                        redact_at(value, rest);
                    }
                }
            }
            Step::DropIf(_) | Step::AllowFields(_) => {}
        }
    }
    Ok(open.close().map(Transformed::Keep))
}
