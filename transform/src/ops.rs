//! The transform operations as configured and compiled (`Step`), and what each does
//! to an event as JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use switchyard_schemas::Event;

use super::condition::Condition;

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
pub(super) const REQUIRED: [&str; 13] = [
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

pub(super) fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |current, key| current.get(key))
}

fn get_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |current, key| current.get_mut(key))
}

pub(super) fn remove(value: &mut Value, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    get_mut(value, parents)?.as_object_mut()?.remove(last)
}

pub(super) fn insert(value: &mut Value, path: &[String], field: Value) -> Result<(), String> {
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
