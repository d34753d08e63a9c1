//! A hand-written `Deserialize` for [`Event`]. The derived one (an internally tagged
//! enum with flattened fields) buffers every event into serde's `Content` tree before
//! building it, which was a third of ingest's CPU; this reads each field once.
//!
//! The rules are the derived ones: the `type` field picks the variant, fields of the
//! spec are typed, everything else lands in `extra` unchanged. A field that belongs to
//! another type (an `event` on an identify) is also kept in `extra`, untouched.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::event::{Alias, Common, Event, EventType, Group, Identify, Object, Page, Screen, Track};
use crate::raw::RawObject;

enum Field {
    Type,
    MessageId,
    AnonymousId,
    UserId,
    Timestamp,
    SentAt,
    OriginalTimestamp,
    ReceivedAt,
    Context,
    Integrations,
    /// Fields only some types model; kept as JSON until the type is known.
    Specific(Specific),
    Other(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Specific {
    Event,
    Name,
    Category,
    Properties,
    Traits,
    GroupId,
    PreviousId,
}

/// `properties` and `traits` are kept as text (see `raw.rs`); the others as values.
enum Slot {
    Value(Value),
    Raw(Box<RawValue>),
}

impl Slot {
    fn into_value(self) -> Value {
        match self {
            Slot::Value(value) => value,
            // The text came from the JSON parser, so it parses again.
            Slot::Raw(raw) => serde_json::from_str(raw.get()).unwrap_or_default(),
        }
    }
}

impl Specific {
    const COUNT: usize = 7;

    fn is_raw(self) -> bool {
        matches!(self, Specific::Properties | Specific::Traits)
    }

    fn name(self) -> &'static str {
        match self {
            Specific::Event => "event",
            Specific::Name => "name",
            Specific::Category => "category",
            Specific::Properties => "properties",
            Specific::Traits => "traits",
            Specific::GroupId => "groupId",
            Specific::PreviousId => "previousId",
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(match name {
                    "type" => Field::Type,
                    "messageId" => Field::MessageId,
                    "anonymousId" => Field::AnonymousId,
                    "userId" => Field::UserId,
                    "timestamp" => Field::Timestamp,
                    "sentAt" => Field::SentAt,
                    "originalTimestamp" => Field::OriginalTimestamp,
                    "receivedAt" => Field::ReceivedAt,
                    "context" => Field::Context,
                    "integrations" => Field::Integrations,
                    "event" => Field::Specific(Specific::Event),
                    "name" => Field::Specific(Specific::Name),
                    "category" => Field::Specific(Specific::Category),
                    "properties" => Field::Specific(Specific::Properties),
                    "traits" => Field::Specific(Specific::Traits),
                    "groupId" => Field::Specific(Specific::GroupId),
                    "previousId" => Field::Specific(Specific::PreviousId),
                    other => Field::Other(other.to_string()),
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

struct Id(Option<String>);
impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::ids::optional(deserializer).map(Id)
    }
}

struct Time(Option<DateTime<Utc>>);
impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::event::timestamp(deserializer).map(Time)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventVisitor)
    }
}

struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Segment message (a JSON object with a \"type\")")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        let mut kind: Option<EventType> = None;
        let mut common = Common::default();
        let mut specific: [Option<Slot>; Specific::COUNT] = Default::default();
        let mut extra = Object::new();
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Type => kind = Some(map.next_value()?),
                Field::MessageId => common.message_id = map.next_value::<Id>()?.0,
                Field::AnonymousId => common.anonymous_id = map.next_value::<Id>()?.0,
                Field::UserId => common.user_id = map.next_value::<Id>()?.0,
                Field::Timestamp => common.timestamp = map.next_value::<Time>()?.0,
                Field::SentAt => common.sent_at = map.next_value::<Time>()?.0,
                Field::OriginalTimestamp => common.original_timestamp = map.next_value::<Time>()?.0,
                Field::ReceivedAt => common.received_at = map.next_value::<Time>()?.0,
                Field::Context => common.context = map.next_value()?,
                Field::Integrations => common.integrations = map.next_value()?,
                Field::Specific(which) => {
                    specific[which as usize] = Some(if which.is_raw() {
                        Slot::Raw(map.next_value()?)
                    } else {
                        Slot::Value(map.next_value()?)
                    })
                }
                Field::Other(name) => {
                    extra.insert(name, map.next_value()?);
                }
            }
        }
        let kind = kind.ok_or_else(|| de::Error::missing_field("type"))?;
        let mut fields = Fields {
            values: specific,
            extra,
        };
        let event = match kind {
            EventType::Identify => Event::Identify(Identify {
                common,
                traits: fields.object(Specific::Traits)?,
                extra: Object::new(),
            }),
            EventType::Track => Event::Track(Track {
                common,
                event: fields.text(Specific::Event)?,
                properties: fields.object(Specific::Properties)?,
                extra: Object::new(),
            }),
            EventType::Page => Event::Page(Page {
                common,
                name: fields.text(Specific::Name)?,
                category: fields.text(Specific::Category)?,
                properties: fields.object(Specific::Properties)?,
                extra: Object::new(),
            }),
            EventType::Screen => Event::Screen(Screen {
                common,
                name: fields.text(Specific::Name)?,
                category: fields.text(Specific::Category)?,
                properties: fields.object(Specific::Properties)?,
                extra: Object::new(),
            }),
            EventType::Group => Event::Group(Group {
                common,
                group_id: fields.id(Specific::GroupId)?,
                traits: fields.object(Specific::Traits)?,
                extra: Object::new(),
            }),
            EventType::Alias => Event::Alias(Alias {
                common,
                previous_id: fields.id(Specific::PreviousId)?,
                extra: Object::new(),
            }),
        };
        Ok(fields.finish(event))
    }
}

/// The type-specific fields seen, taken one by one by the chosen variant; what is left
/// goes to `extra`.
struct Fields {
    values: [Option<Slot>; Specific::COUNT],
    extra: Object,
}

impl Fields {
    fn take(&mut self, which: Specific) -> Option<Value> {
        self.values[which as usize].take().map(Slot::into_value)
    }

    fn text<E: de::Error>(&mut self, which: Specific) -> Result<Option<String>, E> {
        match self.take(which) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(E::custom(format!(
                "{} must be a string, got {}",
                which.name(),
                crate::ids::kind_of(&other)
            ))),
        }
    }

    fn object<E: de::Error>(&mut self, which: Specific) -> Result<Option<RawObject>, E> {
        match self.values[which as usize].take() {
            None => Ok(None),
            Some(Slot::Raw(raw)) if raw.get() == "null" => Ok(None),
            Some(Slot::Raw(raw)) => RawObject::from_raw(raw)
                .map(Some)
                .map_err(|kind| E::custom(format!("{} must be an object, got {kind}", which.name()))),
            Some(Slot::Value(Value::Null)) => Ok(None),
            Some(Slot::Value(value)) => {
                RawObject::from_raw(serde_json::value::to_raw_value(&value).map_err(E::custom)?)
                    .map(Some)
                    .map_err(|kind| E::custom(format!("{} must be an object, got {kind}", which.name())))
            }
        }
    }

    fn id<E: de::Error>(&mut self, which: Specific) -> Result<Option<String>, E> {
        match self.take(which) {
            None => Ok(None),
            Some(value) => crate::ids::optional(value).map_err(|error| E::custom(format!("{}: {error}", which.name()))),
        }
    }

    fn finish(self, mut event: Event) -> Event {
        let Fields { values, mut extra } = self;
        let all = [
            Specific::Event,
            Specific::Name,
            Specific::Category,
            Specific::Properties,
            Specific::Traits,
            Specific::GroupId,
            Specific::PreviousId,
        ];
        for (which, value) in all.into_iter().zip(values) {
            if let Some(value) = value {
                extra.insert(which.name().to_string(), value.into_value());
            }
        }
        *event.extra_mut() = extra;
        event
    }
}
