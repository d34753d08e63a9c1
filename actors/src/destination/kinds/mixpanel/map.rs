//! One Segment event as Mixpanel's: an `/import` event, user profile updates for
//! `/engage`, group profile updates for `/groups` (the table is in the module above).

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use switchyard_schemas::{Event, RawObject};

use crate::destination::config::MixpanelConfig;

/// What one Segment event becomes.
#[derive(Debug, Default)]
pub struct Mapped {
    pub event: Option<Value>,
    pub engage: Vec<Value>,
    pub groups: Vec<Value>,
}

/// Segment's reserved traits under the names Mixpanel's profiles give them.
const PROFILE_TRAITS: &[(&str, &str)] = &[
    ("email", "$email"),
    ("firstName", "$first_name"),
    ("lastName", "$last_name"),
    ("name", "$name"),
    ("phone", "$phone"),
    ("avatar", "$avatar"),
    ("createdAt", "$created"),
];

/// The event's id as Mixpanel's `$insert_id` (at most 36 letters, digits or `-`): the
/// messageId when it is one, else the first 36 hex digits of its SHA-256, the same
/// on every retry.
pub fn insert_id(message_id: &str) -> String {
    let fits = !message_id.is_empty()
        && message_id.len() <= 36
        && message_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if fits {
        return message_id.to_string();
    }
    let digest = hex::encode(Sha256::digest(message_id.as_bytes()));
    digest[..36].to_string()
}

fn at<'a>(object: Option<&'a Map<String, Value>>, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut current = object?;
    for key in parents {
        current = current.get(*key)?.as_object()?;
    }
    current.get(*last).filter(|value| !value.is_null())
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|s| !s.is_empty())
}

fn parsed(raw: Option<&RawObject>) -> Map<String, Value> {
    raw.and_then(|raw| raw.parse().ok()).unwrap_or_default()
}

/// The properties every event made from `event` carries (they win over the event's
/// own properties of the same name): who, when, its id, and `context`.
fn reserved(event: &Event) -> Map<String, Value> {
    let common = event.common();
    let context = common.context.as_ref();
    let user = non_empty(common.user_id.as_deref());
    let anonymous = non_empty(common.anonymous_id.as_deref());
    let mut out = Map::new();
    out.insert("distinct_id".into(), json!(user.or(anonymous).unwrap_or_default()));
    // Mixpanel requires a time; ingest always sets `timestamp`, an event from elsewhere may not.
    let time = common.timestamp.or(common.received_at).unwrap_or_else(chrono::Utc::now);
    out.insert("time".into(), json!(time.timestamp_millis()));
    if let Some(id) = event.message_id() {
        out.insert("$insert_id".into(), json!(insert_id(id)));
    }
    if let Some(user) = user {
        out.insert("$user_id".into(), json!(user));
    }
    if let Some(anonymous) = anonymous {
        out.insert("$device_id".into(), json!(anonymous));
    }
    let fields: &[(&str, &[&str])] = &[
        ("ip", &["ip"]),
        ("$os", &["os", "name"]),
        ("$os_version", &["os", "version"]),
        ("$manufacturer", &["device", "manufacturer"]),
        ("$model", &["device", "model"]),
        ("$app_version_string", &["app", "version"]),
        ("$carrier", &["network", "carrier"]),
        ("$current_url", &["page", "url"]),
        ("$referrer", &["page", "referrer"]),
        ("$screen_height", &["screen", "height"]),
        ("$screen_width", &["screen", "width"]),
        ("$city", &["location", "city"]),
        ("$region", &["location", "region"]),
        ("mp_lib", &["library", "name"]),
        ("$lib_version", &["library", "version"]),
        ("utm_source", &["campaign", "source"]),
        ("utm_medium", &["campaign", "medium"]),
        ("utm_campaign", &["campaign", "name"]),
        ("utm_term", &["campaign", "term"]),
        ("utm_content", &["campaign", "content"]),
    ];
    for (name, path) in fields {
        if let Some(value) = at(context, path) {
            out.insert((*name).into(), value.clone());
        }
    }
    out
}

fn import_event(name: String, mut properties: Map<String, Value>, event: &Event) -> Value {
    properties.extend(reserved(event));
    json!({"event": name, "properties": properties})
}

fn viewed(name: Option<&str>, what: &str) -> String {
    match non_empty(name) {
        Some(name) => format!("Viewed {name} {what}"),
        None => format!("Loaded a {what}"),
    }
}

/// A profile update of `operation` for the event's user.
fn profile(config: &MixpanelConfig, event: &Event, operation: &str, value: Value) -> Value {
    let common = event.common();
    let distinct = non_empty(common.user_id.as_deref())
        .or(non_empty(common.anonymous_id.as_deref()))
        .unwrap_or_default();
    let mut update = json!({"$token": config.project_token, "$distinct_id": distinct, operation: value});
    if let Some(ip) = at(common.context.as_ref(), &["ip"]) {
        update["$ip"] = ip.clone();
    }
    update
}

fn profile_traits(traits: Map<String, Value>) -> Map<String, Value> {
    traits
        .into_iter()
        .map(|(key, value)| {
            let name = PROFILE_TRAITS
                .iter()
                .find(|(segment, _)| *segment == key)
                .map_or(key, |(_, mixpanel)| (*mixpanel).to_string());
            (name, value)
        })
        .collect()
}

pub fn mixpanel(event: &Event, config: &MixpanelConfig) -> Mapped {
    match event {
        Event::Track(track) => Mapped {
            event: Some(import_event(
                track.event.clone().unwrap_or_default(),
                parsed(track.properties.as_ref()),
                event,
            )),
            ..Mapped::default()
        },
        Event::Page(page) => {
            let mut properties = parsed(page.properties.as_ref());
            for (key, value) in [("name", &page.name), ("category", &page.category)] {
                if let Some(value) = value {
                    properties.entry(key).or_insert_with(|| json!(value));
                }
            }
            Mapped {
                event: Some(import_event(viewed(page.name.as_deref(), "Page"), properties, event)),
                ..Mapped::default()
            }
        }
        Event::Screen(screen) => {
            let mut properties = parsed(screen.properties.as_ref());
            if let Some(name) = &screen.name {
                properties.entry("name").or_insert_with(|| json!(name));
            }
            Mapped {
                event: Some(import_event(
                    viewed(screen.name.as_deref(), "Screen"),
                    properties,
                    event,
                )),
                ..Mapped::default()
            }
        }
        Event::Identify(identify) => {
            let common = event.common();
            // An anonymous identify only updates the anonymous profile.
            let merge = non_empty(common.user_id.as_deref()).map(|user| {
                let mut properties = Map::new();
                properties.insert("$identified_id".into(), json!(user));
                if let Some(anonymous) = non_empty(common.anonymous_id.as_deref()) {
                    properties.insert("$anon_id".into(), json!(anonymous));
                }
                import_event("$identify".into(), properties, event)
            });
            let traits = profile_traits(parsed(identify.traits.as_ref()));
            Mapped {
                event: merge,
                engage: vec![profile(config, event, "$set", Value::Object(traits))],
                groups: Vec::new(),
            }
        }
        Event::Group(group) => {
            let group_id = group.group_id.clone().unwrap_or_default();
            let joins = profile(
                config,
                event,
                "$union",
                json!({ config.group_key.as_str(): [group_id] }),
            );
            let traits = profile_traits(parsed(group.traits.as_ref()));
            let describes = json!({"$token": config.project_token, "$group_key": config.group_key,
                                   "$group_id": group_id, "$set": traits});
            Mapped {
                event: None,
                engage: vec![joins],
                groups: vec![describes],
            }
        }
        Event::Alias(alias) => {
            let mut properties = Map::new();
            properties.insert(
                "alias".into(),
                json!(event.common().user_id.clone().unwrap_or_default()),
            );
            let mut out = import_event("$create_alias".into(), properties, event);
            // The id being given another name.
            out["properties"]["distinct_id"] = json!(alias.previous_id.clone().unwrap_or_default());
            Mapped {
                event: Some(out),
                ..Mapped::default()
            }
        }
    }
}
