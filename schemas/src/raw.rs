//! `properties` and `traits` travel as the exact JSON text the client sent: the router
//! never needs to look inside them to route, and not building a tree for them (and
//! writing it out again) was a quarter of ingest's CPU. Destinations that need the
//! values (the warehouse) parse them on demand.

use serde::de::{self, Deserialize, Deserializer};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A JSON object as a tree (the event types use it too, as `event::Object`).
pub type Object = Map<String, Value>;

/// A JSON object kept as its original text.
#[derive(Clone)]
pub struct RawObject(Box<RawValue>);

impl RawObject {
    /// The object's JSON text, as sent.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses the object into a map.
    pub fn parse(&self) -> Result<Object, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// Accepts raw JSON text when it is an object; otherwise says what it is.
    pub fn from_raw(raw: Box<RawValue>) -> Result<Self, &'static str> {
        if raw.get().trim_start().starts_with('{') {
            Ok(RawObject(raw))
        } else {
            Err(describe(raw.get()))
        }
    }

    /// Wraps a map (for events built in code rather than parsed).
    pub fn from_object(object: &Object) -> Result<Self, serde_json::Error> {
        Ok(RawObject(serde_json::value::to_raw_value(object)?))
    }
}

impl PartialEq for RawObject {
    /// Equal when the objects are equal as JSON, whatever their spacing or key order.
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get() || matches!((self.parse(), other.parse()), (Ok(a), Ok(b)) if a == b)
    }
}

impl std::fmt::Debug for RawObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for RawObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        RawObject::from_raw(raw).map_err(|kind| de::Error::custom(format!("expected an object, got {kind}")))
    }
}

fn describe(json: &str) -> &'static str {
    match json.trim_start().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_text_and_refuses_non_objects() {
        let raw: RawObject = serde_json::from_str(r#"{"b": 1,  "a": [true]}"#).expect("object");
        assert_eq!(raw.get(), r#"{"b": 1,  "a": [true]}"#);
        let same: RawObject = serde_json::from_str(r#"{"a":[true],"b":1}"#).expect("object");
        assert_eq!(raw, same, "equal as JSON");
        let error = serde_json::from_str::<RawObject>("[1, 2]").expect_err("not an object");
        assert!(
            error.to_string().contains("expected an object, got an array"),
            "{error}"
        );
        let from_value: RawObject = serde_json::from_value(serde_json::json!({"x": 1})).expect("from a Value too");
        assert_eq!(from_value.parse().expect("parses")["x"], 1);
    }
}
