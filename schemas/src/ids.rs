//! Segment libraries send identifiers as strings, but several (analytics-python,
//! analytics-node) accept numbers from the caller and some older ones forward them
//! unconverted. We accept a JSON number and keep it as its decimal string, which is
//! what the libraries that stringify would have sent.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub(crate) fn optional<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "an identifier must be a string or a number, got {}",
            kind_of(&other)
        ))),
    }
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
