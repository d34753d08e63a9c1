//! The Segment spec (<https://segment.com/docs/connections/spec/>) as serde types.
//!
//! Every message type flattens [`Common`] and keeps whatever else the client sent in
//! `extra`, so a field we don't model survives the trip to Kafka and to every
//! destination unchanged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

pub use crate::raw::Object;
use crate::raw::RawObject;

/// One Segment message. The JSON `type` field selects the variant. Deserialization is
/// hand-written for speed (see `de.rs`); it follows the derived rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Identify(Identify),
    Track(Track),
    Page(Page),
    Screen(Screen),
    Group(Group),
    Alias(Alias),
}

/// The message types, as they appear in the JSON `type` field and in ingest paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Identify,
    Track,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Identify,
        EventType::Track,
        EventType::Page,
        EventType::Screen,
        EventType::Group,
        EventType::Alias,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Identify => "identify",
            EventType::Track => "track",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fields every message type shares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Common {
    #[serde(
        default,
        deserialize_with = "crate::ids::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub message_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::ids::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub anonymous_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::ids::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "timestamp",
        serialize_with = "write_timestamp",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(
        default,
        deserialize_with = "timestamp",
        serialize_with = "write_timestamp",
        skip_serializing_if = "Option::is_none"
    )]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        deserialize_with = "timestamp",
        serialize_with = "write_timestamp",
        skip_serializing_if = "Option::is_none"
    )]
    pub original_timestamp: Option<DateTime<Utc>>,
    #[serde(
        default,
        deserialize_with = "timestamp",
        serialize_with = "write_timestamp",
        skip_serializing_if = "Option::is_none"
    )]
    pub received_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Object>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrations: Option<Object>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identify {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traits: Option<RawObject>,
    #[serde(flatten)]
    pub extra: Object,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Track {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<RawObject>,
    #[serde(flatten)]
    pub extra: Object,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Page {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<RawObject>,
    #[serde(flatten)]
    pub extra: Object,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Screen {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<RawObject>,
    #[serde(flatten)]
    pub extra: Object,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    #[serde(flatten)]
    pub common: Common,
    #[serde(
        default,
        deserialize_with = "crate::ids::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traits: Option<RawObject>,
    #[serde(flatten)]
    pub extra: Object,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alias {
    #[serde(flatten)]
    pub common: Common,
    #[serde(
        default,
        deserialize_with = "crate::ids::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_id: Option<String>,
    #[serde(flatten)]
    pub extra: Object,
}

impl Event {
    pub fn event_type(&self) -> EventType {
        match self {
            Event::Identify(_) => EventType::Identify,
            Event::Track(_) => EventType::Track,
            Event::Page(_) => EventType::Page,
            Event::Screen(_) => EventType::Screen,
            Event::Group(_) => EventType::Group,
            Event::Alias(_) => EventType::Alias,
        }
    }

    pub fn common(&self) -> &Common {
        match self {
            Event::Identify(m) => &m.common,
            Event::Track(m) => &m.common,
            Event::Page(m) => &m.common,
            Event::Screen(m) => &m.common,
            Event::Group(m) => &m.common,
            Event::Alias(m) => &m.common,
        }
    }

    pub fn common_mut(&mut self) -> &mut Common {
        match self {
            Event::Identify(m) => &mut m.common,
            Event::Track(m) => &mut m.common,
            Event::Page(m) => &mut m.common,
            Event::Screen(m) => &mut m.common,
            Event::Group(m) => &mut m.common,
            Event::Alias(m) => &mut m.common,
        }
    }

    /// Fields the client sent that the spec doesn't name.
    pub fn extra(&self) -> &Object {
        match self {
            Event::Identify(m) => &m.extra,
            Event::Track(m) => &m.extra,
            Event::Page(m) => &m.extra,
            Event::Screen(m) => &m.extra,
            Event::Group(m) => &m.extra,
            Event::Alias(m) => &m.extra,
        }
    }

    pub fn extra_mut(&mut self) -> &mut Object {
        match self {
            Event::Identify(m) => &mut m.extra,
            Event::Track(m) => &mut m.extra,
            Event::Page(m) => &mut m.extra,
            Event::Screen(m) => &mut m.extra,
            Event::Group(m) => &mut m.extra,
            Event::Alias(m) => &mut m.extra,
        }
    }

    pub fn message_id(&self) -> Option<&str> {
        self.common().message_id.as_deref()
    }

    /// The identity that orders this user's events: userId, else anonymousId.
    pub fn user_key(&self) -> Option<&str> {
        let common = self.common();
        non_empty(common.user_id.as_deref()).or(non_empty(common.anonymous_id.as_deref()))
    }
}

pub(crate) fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|text| !text.is_empty())
}

/// ISO-8601 / RFC 3339 with a time zone, as every Segment library sends. A zone-less
/// time is refused rather than guessed: the skew correction would silently be off by
/// the client's UTC offset.
/// Always at least milliseconds (`2024-05-01T12:00:00.000Z`), finer when the client
/// sent finer: one width for the common case keeps the text sortable and the same as
/// Segment's.
fn write_timestamp<S: serde::Serializer>(time: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    use chrono::SecondsFormat;
    match time {
        Some(time) => {
            let format = if time.timestamp_subsec_nanos() % 1_000_000 == 0 {
                SecondsFormat::Millis
            } else {
                SecondsFormat::AutoSi
            };
            serializer.serialize_str(&time.to_rfc3339_opts(format, true))
        }
        None => serializer.serialize_none(),
    }
}

pub(crate) fn timestamp<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(&text)
            .map(|time| Some(time.with_timezone(&Utc)))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "{text:?} is not an ISO-8601 date-time with a time zone (e.g. 2024-05-01T12:00:00.000Z)"
                ))
            }),
        Some(other) => Err(serde::de::Error::custom(format!(
            "a date-time must be an ISO-8601 string, got {}",
            crate::ids::kind_of(&other)
        ))),
    }
}
