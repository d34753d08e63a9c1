//! The transform operations, applied to an event as JSON.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use switchyard_schemas::{Event, validate};

use super::condition::Condition;
use super::sections;

/// One step of a transform chain, as written in the configuration.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformConfig {
    /// Drops the event when the VRL condition is true (e.g. `.event == "Heartbeat"`).
    DropIf { condition: String },
    /// Moves a field (dotted path, e.g. `properties.email`) to another path.
    Rename { from: String, to: String },
    /// Removes these fields.
    DropFields { fields: Vec<String> },
    /// Keeps only these fields, beside those the spec requires (type, ids, times,
    /// event, name, groupId, previousId).
    AllowFields { fields: Vec<String> },
    /// Replaces each field's value with the hex SHA-256 of salt + value.
    Hash { fields: Vec<String>, salt: String },
    /// Replaces each field's value with "[redacted]".
    Redact { fields: Vec<String> },
    /// Keeps this fraction of events, chosen by messageId so a retry decides alike.
    Sample { rate: f64 },
}

/// The salt is a secret: never print it.
impl std::fmt::Debug for TransformConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransformConfig::Hash { fields, .. } => {
                f.debug_struct("Hash").field("fields", fields).finish_non_exhaustive()
            }
            TransformConfig::DropIf { condition } => f.debug_struct("DropIf").field("condition", condition).finish(),
            TransformConfig::Rename { from, to } => {
                f.debug_struct("Rename").field("from", from).field("to", to).finish()
            }
            TransformConfig::DropFields { fields } => f.debug_struct("DropFields").field("fields", fields).finish(),
            TransformConfig::AllowFields { fields } => f.debug_struct("AllowFields").field("fields", fields).finish(),
            TransformConfig::Redact { fields } => f.debug_struct("Redact").field("fields", fields).finish(),
            TransformConfig::Sample { rate } => f.debug_struct("Sample").field("rate", rate).finish(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error("transforms[{index}]: {reason}")]
    Config { index: usize, reason: String },
    #[error("transform {op} failed: {reason}")]
    Run { op: &'static str, reason: String },
}

/// A compiled transform chain.
#[derive(Debug, Clone, Default)]
pub struct Transform {
    /// Shared: every source's actor of a destination runs the same chain.
    steps: Arc<[Step]>,
    /// Every step touches only fields inside `context`, `properties` or `traits` (or
    /// samples): those parts are changed in place, without re-encoding the event.
    sections: bool,
}

#[derive(Debug, Clone)]
pub(super) enum Step {
    DropIf(Condition),
    Rename(Vec<String>, Vec<String>),
    DropFields(Vec<Vec<String>>),
    AllowFields(Vec<Vec<String>>),
    Hash(Vec<Vec<String>>, String),
    Redact(Vec<Vec<String>>),
    Sample(f64),
}

/// What a chain did with an event.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "moved once per event; boxing would add an allocation per event"
)]
pub enum Transformed {
    Keep(Event),
    /// Dropped on purpose (a condition or sampling): finished, not an error.
    Filtered,
}

/// Fields every event keeps under an allow-list: without them it isn't an event.
const REQUIRED: [&str; 13] = [
    "type",
    "messageId",
    "userId",
    "anonymousId",
    "timestamp",
    "sentAt",
    "originalTimestamp",
    "receivedAt",
    "event",
    "name",
    "category",
    "groupId",
    "previousId",
];

fn path(text: &str) -> Vec<String> {
    text.split('.').map(str::to_string).collect()
}

impl Transform {
    /// Compiles a chain; errors name the step and, for conditions, the position.
    pub fn compile(configs: &[TransformConfig]) -> Result<Self, TransformError> {
        let mut steps = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let bad = |reason: String| TransformError::Config { index, reason };
            let paths = |fields: &[String]| -> Result<Vec<Vec<String>>, TransformError> {
                if fields.is_empty() {
                    return Err(bad("fields must name at least one field".into()));
                }
                if let Some(empty) = fields.iter().find(|f| f.split('.').any(str::is_empty)) {
                    return Err(bad(format!(
                        "field {empty:?} is not a dotted path like properties.email"
                    )));
                }
                Ok(fields.iter().map(|f| path(f)).collect())
            };
            steps.push(match config {
                TransformConfig::DropIf { condition } => Step::DropIf(Condition::compile(condition).map_err(bad)?),
                TransformConfig::Rename { from, to } => {
                    let mut both = paths(&[from.clone(), to.clone()])?;
                    let to = both.pop().unwrap_or_default();
                    Step::Rename(both.pop().unwrap_or_default(), to)
                }
                TransformConfig::DropFields { fields } => Step::DropFields(paths(fields)?),
                TransformConfig::AllowFields { fields } => Step::AllowFields(paths(fields)?),
                TransformConfig::Hash { fields, salt } => {
                    if salt.len() < 8 {
                        return Err(bad("salt must be at least 8 characters".into()));
                    }
                    Step::Hash(paths(fields)?, salt.clone())
                }
                TransformConfig::Redact { fields } => Step::Redact(paths(fields)?),
                TransformConfig::Sample { rate } => {
                    if !(0.0..=1.0).contains(rate) {
                        return Err(bad(format!("rate {rate} must be between 0 and 1")));
                    }
                    Step::Sample(*rate)
                }
            });
        }
        let sections = sections::eligible(&steps);
        Ok(Transform {
            steps: steps.into(),
            sections,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs the chain. The result must still be a valid event.
    pub fn apply(&self, event: Event) -> Result<Transformed, TransformError> {
        if self.steps.is_empty() {
            return Ok(Transformed::Keep(event));
        }
        let event = if self.sections {
            match sections::apply(&self.steps, event) {
                Ok(done) => return done,
                Err(event) => event,
            }
        } else {
            event
        };
        let message_id = event.message_id().unwrap_or_default().to_string();
        let mut value = serde_json::to_value(&event).map_err(|e| run("encode", e.to_string()))?;
        for step in self.steps.iter() {
            match step {
                Step::DropIf(condition) => {
                    if condition.matches(&value).map_err(|reason| run("drop_if", reason))? {
                        return Ok(Transformed::Filtered);
                    }
                }
                Step::Rename(from, to) => rename(&mut value, from, to)?,
                Step::DropFields(paths) => {
                    for path in paths {
                        remove(&mut value, path);
                    }
                }
                Step::AllowFields(paths) => {
                    let mut kept = Value::Object(Map::new());
                    for key in REQUIRED {
                        if let Some(field) = value.get(key) {
                            insert(&mut kept, &[key.to_string()], field.clone()).map_err(|r| run("allow_fields", r))?;
                        }
                    }
                    for path in paths {
                        if let Some(field) = get(&value, path) {
                            insert(&mut kept, path, field.clone()).map_err(|r| run("allow_fields", r))?;
                        }
                    }
                    value = kept;
                }
                Step::Hash(paths, salt) => {
                    for path in paths {
                        hash_at(&mut value, path, salt);
                    }
                }
                Step::Redact(paths) => {
                    for path in paths {
                        redact_at(&mut value, path);
                    }
                }
                Step::Sample(rate) => {
                    if !sampled(&message_id, *rate) {
                        return Ok(Transformed::Filtered);
                    }
                }
            }
        }
        let event: Event = serde_json::from_value(value).map_err(|e| run("decode", e.to_string()))?;
        validate(&event).map_err(|e| run("validate", format!("the transformed event is no longer valid: {e}")))?;
        Ok(Transformed::Keep(event))
    }
}

pub(super) fn run(op: &'static str, reason: String) -> TransformError {
    TransformError::Run { op, reason }
}

/// Whether an event with this messageId is in the sample: the same answer every time.
pub(super) fn sampled(message_id: &str, rate: f64) -> bool {
    let digest = Sha256::digest(message_id.as_bytes());
    let draw = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()) as f64 / u64::MAX as f64;
    draw < rate
}

pub(super) fn rename(value: &mut Value, from: &[String], to: &[String]) -> Result<(), TransformError> {
    if let Some(moved) = remove(value, from) {
        insert(value, to, moved).map_err(|reason| run("rename", reason))?;
    }
    Ok(())
}

pub(super) fn hash_at(value: &mut Value, path: &[String], salt: &str) {
    if let Some(field) = get_mut(value, path) {
        let text = match &*field {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let digest = Sha256::digest(format!("{salt}{text}").as_bytes());
        *field = Value::String(hex::encode(digest));
    }
}

pub(super) fn redact_at(value: &mut Value, path: &[String]) {
    if let Some(field) = get_mut(value, path) {
        *field = Value::String("[redacted]".into());
    }
}

fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |current, key| current.get(key))
}

fn get_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |current, key| current.get_mut(key))
}

pub(super) fn remove(value: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    get_mut(value, parents)?.as_object_mut()?.remove(last)
}

fn insert(value: &mut Value, path: &[String], field: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut current = value;
    for key in parents {
        let object = current
            .as_object_mut()
            .ok_or_else(|| format!("{key} is inside a value that is not an object"))?;
        current = object.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
    let object = current
        .as_object_mut()
        .ok_or_else(|| format!("cannot set {last}: its parent is not an object"))?;
    object.insert(last.clone(), field);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: Value) -> Event {
        serde_json::from_value(value).expect("sample parses")
    }

    fn sample() -> Event {
        event(json!({
            "type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m-1",
            "properties": {"email": "ada@example.com", "plan": "pro", "phone": "+44 1234"},
            "context": {"ip": "203.0.113.9", "locale": "en-GB"}
        }))
    }

    fn apply(configs: Vec<TransformConfig>, input: Event) -> Value {
        let transform = Transform::compile(&configs).expect("compiles");
        match transform.apply(input).expect("runs") {
            Transformed::Keep(event) => serde_json::to_value(event).expect("serialises"),
            Transformed::Filtered => Value::Null,
        }
    }

    #[test]
    fn the_section_fast_path_gives_what_the_general_path_gives() {
        let fields = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let chains = vec![
            vec![TransformConfig::Redact {
                fields: fields(&["context.userAgent", "properties.email", "context.missing"]),
            }],
            vec![
                TransformConfig::Hash {
                    fields: fields(&["traits.email", "context.ip"]),
                    salt: "salty-salt".into(),
                },
                TransformConfig::Rename {
                    from: "properties.plan".into(),
                    to: "properties.tier.name".into(),
                },
                TransformConfig::DropFields {
                    fields: fields(&["context.locale", "properties.phone"]),
                },
            ],
            vec![
                TransformConfig::Rename {
                    from: "context.ip".into(),
                    to: "context.network.ip".into(),
                },
                TransformConfig::Sample { rate: 0.5 },
            ],
        ];
        let events = [
            sample(),
            event(json!({"type": "identify", "userId": "u2", "messageId": "m-2",
                         "traits": {"email": "bo@example.com", "plan": "free"}, "context": {"ip": "198.51.100.1"}})),
            event(json!({"type": "identify", "userId": "u3", "messageId": "m-3",
                         "properties": {"email": "not-a-trait@example.com", "plan": "x"}})),
            event(json!({"type": "track", "userId": "u4", "event": "Bare", "messageId": "m-4"})),
            event(
                json!({"type": "page", "userId": "u5", "name": "Home", "messageId": "m-5",
                         "properties": {"plan": "pro", "email": "cy@example.com"}, "context": {"userAgent": "x"}}),
            ),
        ];
        for chain in chains {
            let fast = Transform::compile(&chain).expect("compiles");
            assert!(fast.sections, "{chain:?} runs on sections");
            let general = Transform {
                sections: false,
                ..fast.clone()
            };
            for input in &events {
                let outcome = |transform: &Transform| match transform.apply(input.clone()).expect("runs") {
                    Transformed::Keep(event) => serde_json::to_value(event).expect("serialises"),
                    Transformed::Filtered => Value::Null,
                };
                assert_eq!(outcome(&fast), outcome(&general), "{chain:?} on {input:?}");
            }
        }
        let conditional = vec![TransformConfig::DropIf {
            condition: ".event == \"x\"".into(),
        }];
        assert!(!Transform::compile(&conditional).expect("compiles").sections);
    }

    #[test]
    fn drop_if_filters_matching_events_only() {
        let drop_heartbeats = || {
            vec![TransformConfig::DropIf {
                condition: r#".event == "Heartbeat""#.into(),
            }]
        };
        assert_eq!(
            apply(
                drop_heartbeats(),
                event(json!({"type": "track", "userId": "u", "event": "Heartbeat"}))
            ),
            Value::Null
        );
        assert_eq!(apply(drop_heartbeats(), sample())["event"], "Signed Up");
    }

    #[test]
    fn rename_drop_and_allow_list_fields() {
        let out = apply(
            vec![
                TransformConfig::Rename {
                    from: "properties.email".into(),
                    to: "traits.email".into(),
                },
                TransformConfig::DropFields {
                    fields: vec!["properties.phone".into()],
                },
            ],
            sample(),
        );
        assert_eq!(out["traits"]["email"], "ada@example.com");
        assert!(out["properties"].get("email").is_none() && out["properties"].get("phone").is_none());
        assert_eq!(out["properties"]["plan"], "pro");

        let out = apply(
            vec![TransformConfig::AllowFields {
                fields: vec!["properties.plan".into()],
            }],
            sample(),
        );
        assert_eq!(out["properties"], json!({"plan": "pro"}));
        assert!(out.get("context").is_none());
        assert_eq!(
            (out["type"].clone(), out["userId"].clone(), out["event"].clone()),
            (json!("track"), json!("u1"), json!("Signed Up"))
        );
    }

    #[test]
    fn hash_and_redact_pii() {
        let out = apply(
            vec![
                TransformConfig::Hash {
                    fields: vec!["properties.email".into()],
                    salt: "pepper-123".into(),
                },
                TransformConfig::Redact {
                    fields: vec!["context.ip".into(), "properties.missing".into()],
                },
            ],
            sample(),
        );
        let expected = hex::encode(Sha256::digest(b"pepper-123ada@example.com"));
        assert_eq!(out["properties"]["email"], json!(expected));
        assert_eq!(out["context"]["ip"], "[redacted]");
        assert!(out["properties"].get("missing").is_none(), "absent fields stay absent");
    }

    #[test]
    fn sampling_keeps_about_the_rate_and_decides_alike_for_a_messageid() {
        let transform = Transform::compile(&[TransformConfig::Sample { rate: 0.25 }]).expect("compiles");
        let kept = (0..4000)
            .filter(|i| {
                let input =
                    event(json!({"type": "track", "userId": "u", "event": "e", "messageId": format!("id-{i}")}));
                matches!(transform.apply(input), Ok(Transformed::Keep(_)))
            })
            .count();
        assert!((850..1150).contains(&kept), "kept {kept} of 4000 at 25%");
        let again = |id: &str| {
            matches!(
                transform.apply(event(json!({"type": "page", "userId": "u", "messageId": id}))),
                Ok(Transformed::Keep(_))
            )
        };
        assert_eq!(again("fixed"), again("fixed"));
    }

    #[test]
    fn bad_configurations_are_refused_with_where() {
        let error = Transform::compile(&[
            TransformConfig::Redact {
                fields: vec!["context.ip".into()],
            },
            TransformConfig::DropIf {
                condition: ".event ==".into(),
            },
        ])
        .expect_err("incomplete condition");
        assert!(error.to_string().starts_with("transforms[1]: condition"), "{error}");
        let error = Transform::compile(&[TransformConfig::Sample { rate: 1.5 }]).expect_err("bad rate");
        assert_eq!(error.to_string(), "transforms[0]: rate 1.5 must be between 0 and 1");
        let error = Transform::compile(&[TransformConfig::Hash {
            fields: vec!["a".into()],
            salt: "x".into(),
        }])
        .expect_err("weak salt");
        assert!(error.to_string().contains("salt"), "{error}");
    }

    #[test]
    fn a_transform_that_breaks_the_event_is_an_error_not_a_silent_drop() {
        let transform = Transform::compile(&[TransformConfig::DropFields {
            fields: vec!["event".into()],
        }])
        .expect("compiles");
        let error = transform
            .apply(sample())
            .expect_err("a track without an event name is invalid");
        assert!(error.to_string().contains("no longer valid"), "{error}");
    }
}
