//! Events as warehouse rows, in Segment's warehouse schema: every event a row of its
//! type's table (`identifies`, `tracks`, `pages`, `screens`, `groups`, `aliases`), a
//! track also a row of its event's own table, an identify with a userId also the
//! user's row of `users`. Context, properties and traits become columns: keys in
//! snake_case, nested objects joined with `_` (`context.library.name` →
//! `context_library_name`).
//!
//! Decisions: a key that can't become a column name (no letter or digit, or one the
//! standard columns already use, or a second key with the same snake_case) is kept in
//! the row's `_overflow` JSON column under its original path, never dropped. Arrays are
//! stored as their JSON text. NUL characters, which Postgres text can't hold, become
//! U+FFFD. An event without a messageId gets `sha256:<digest of the event>`. A track
//! event's table is its name in snake_case; names of the standard tables get `_event`
//! appended.

use std::cell::RefCell;
use std::hash::BuildHasher;

use chrono::{DateTime, SecondsFormat, Utc};
use heck::ToSnakeCase;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use switchyard_schemas::Event;
use switchyard_schemas::event::Common;

/// Postgres truncates longer identifiers.
pub const MAX_NAME: usize = 63;

/// The tables every source's schema may hold besides one per track event.
pub const STANDARD_TABLES: [&str; 7] = ["identifies", "users", "tracks", "pages", "screens", "groups", "aliases"];

/// Columns every event table starts with (besides `id`, `_overflow` and `uuid_ts`).
pub const STANDARD_COLUMNS: [(&str, crate::ColumnType); 6] = [
    ("received_at", crate::ColumnType::Timestamp),
    ("sent_at", crate::ColumnType::Timestamp),
    ("timestamp", crate::ColumnType::Timestamp),
    ("original_timestamp", crate::ColumnType::Timestamp),
    ("user_id", crate::ColumnType::Text),
    ("anonymous_id", crate::ColumnType::Text),
];

/// A value on its way to a column, typed as the event had it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(DateTime<Utc>),
    /// An array, as JSON text.
    Json(String),
}

impl Cell {
    /// None for JSON null (a NULL column) and for objects (flattened instead).
    pub fn from_json(value: &Value) -> Option<Cell> {
        Some(match value {
            Value::Null | Value::Object(_) => return None,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Cell::Int(i),
                None => Cell::Float(n.as_f64()?),
            },
            Value::String(s) => match looks_like_time(s) {
                Some(time) => Cell::Time(time),
                None => Cell::Text(clean(s)),
            },
            Value::Array(_) => Cell::Json(clean(&value.to_string())),
        })
    }

    /// The value as it was sent, for `_overflow`.
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Int(i) => Value::from(*i),
            Cell::Float(f) => Value::from(*f),
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Time(t) => Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Cell::Json(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
        }
    }
}

/// A string is a time only when it is a full RFC 3339 date-time (so "2024" or an id
/// made of digits stays text).
fn looks_like_time(s: &str) -> Option<DateTime<Utc>> {
    if s.len() < 20 || s.len() > 40 || !s.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}")
    } else {
        s.to_string()
    }
}

/// One row: its key (`id`: the messageId, or the userId in `users`), its columns, and
/// what didn't fit a column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub id: String,
    pub cells: Vec<(String, Cell)>,
    pub overflow: Map<String, Value>,
    /// Hashes of the names taken (a collision, about 2^-64, would only send a key to
    /// `_overflow`): a set of strings cost more than the rest of the row on the hot path.
    names: foldhash::HashSet<u64>,
}

/// Fixed seeds: a name hashes the same in every row.
const NAMES: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x5157_1c4a);

fn hash(name: &str) -> u64 {
    NAMES.hash_one(name)
}

impl Row {
    fn new(id: &str) -> Row {
        let mut row = Row {
            id: clean(id),
            ..Row::default()
        };
        for name in ["id", "_overflow", "uuid_ts"] {
            row.names.insert(hash(name));
        }
        row
    }

    fn taken(&self, name: &str) -> bool {
        self.names.contains(&hash(name))
    }

    fn set(&mut self, name: &str, cell: Option<Cell>) {
        if let Some(cell) = cell {
            self.names.insert(hash(name));
            self.cells.push((name.to_string(), cell));
        }
    }

    fn text(&mut self, name: &str, value: Option<&str>) {
        self.set(name, value.map(|v| Cell::Text(clean(v))));
    }

    fn time(&mut self, name: &str, value: Option<DateTime<Utc>>) {
        self.set(name, value.map(Cell::Time));
    }

    /// Flattens an object's keys into columns under `prefix` (empty: none).
    fn flatten(&mut self, prefix: &str, path: &str, object: &Map<String, Value>) {
        for (key, value) in object {
            // The original path is only needed for `_overflow` and nested objects.
            let path = || {
                if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                }
            };
            let snake = cached_part(key);
            let name = match (prefix.is_empty(), snake.is_empty()) {
                (_, true) => String::new(),
                (true, false) => snake,
                (false, false) => {
                    let mut name = String::with_capacity(prefix.len() + 1 + snake.len());
                    name.push_str(prefix);
                    name.push('_');
                    name.push_str(&snake);
                    name
                }
            };
            if let Value::Object(inner) = value {
                if name.is_empty() {
                    self.overflow.insert(path(), value.clone());
                } else {
                    self.flatten(&name, &path(), inner);
                }
                continue;
            }
            let Some(cell) = Cell::from_json(value) else { continue };
            let name = column_name(name);
            if name.is_empty() || self.taken(&name) {
                self.overflow.insert(path(), value.clone());
            } else {
                self.names.insert(hash(&name));
                self.cells.push((name, cell));
            }
        }
    }

    /// Merges a later row of the same key into this one: its values win.
    pub fn merge(&mut self, later: Row) {
        for (name, cell) in later.cells {
            match self.cells.iter_mut().find(|(n, _)| *n == name) {
                Some((_, existing)) => *existing = cell,
                None => self.set(&name, Some(cell)),
            }
        }
        self.overflow.extend(later.overflow);
    }

    pub fn get(&self, name: &str) -> Option<&Cell> {
        self.cells.iter().find(|(n, _)| n == name).map(|(_, cell)| cell)
    }
}

thread_local! {
    /// Keys repeat from event to event; snake_case is the costly part of a row.
    static PARTS: RefCell<foldhash::HashMap<String, String>> = RefCell::default();
}

/// [`column_part`], remembered per thread for up to 10,000 keys.
fn cached_part(key: &str) -> String {
    PARTS.with_borrow_mut(|parts| {
        if let Some(part) = parts.get(key) {
            return part.clone();
        }
        if parts.len() >= 10_000 {
            parts.clear();
        }
        let part = column_part(key);
        parts.insert(key.to_string(), part.clone());
        part
    })
}

/// One key's part of a column name: snake_case, letters, digits and `_` only.
fn column_part(key: &str) -> String {
    key.to_snake_case()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// A full column or table name: starts with a letter or `_`, at most [`MAX_NAME`] bytes.
pub fn column_name(joined: String) -> String {
    let mut name = if joined.starts_with('_') || joined.ends_with('_') {
        joined.trim_matches('_').to_string()
    } else {
        joined
    };
    if name.is_empty() {
        return name;
    }
    if name.as_bytes()[0].is_ascii_digit() {
        name.insert(0, '_');
    }
    name.truncate(MAX_NAME);
    name
}

/// A schema or table name from any text (a source id, a track event's name).
pub fn identifier(text: &str) -> String {
    column_name(column_part(text))
}

/// The table of a track event named `event`.
pub fn event_table(event: &str) -> String {
    let mut name = identifier(event);
    if name.is_empty() {
        name = "unnamed".into();
    }
    if STANDARD_TABLES.contains(&name.as_str()) {
        name.push_str("_event");
        name.truncate(MAX_NAME);
    }
    name
}

/// The rows an event makes, with their tables.
pub fn rows(event: &Event) -> Vec<(String, Row)> {
    let common = event.common();
    // Ingest always sets a messageId; a record produced straight into Kafka may not
    // have one: a digest of the event stands in, so a replay still adds nothing.
    let id = match &common.message_id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => format!(
            "sha256:{}",
            hex::encode(Sha256::digest(serde_json::to_vec(event).unwrap_or_default()))
        ),
    };
    let mut row = standard(common, &id);
    let parsed = |raw: Option<&switchyard_schemas::raw::RawObject>| raw.and_then(|r| r.parse().ok());
    match event {
        Event::Track(track) => {
            let name = track.event.as_deref().unwrap_or_default();
            row.text("event", Some(&event_table(name)));
            row.text("event_text", Some(name));
            let tracks = row.clone();
            if let Some(properties) = parsed(track.properties.as_ref()) {
                row.flatten("", "properties", &properties);
            }
            vec![("tracks".into(), tracks), (event_table(name), row)]
        }
        Event::Identify(identify) => {
            let traits = parsed(identify.traits.as_ref());
            if let Some(traits) = &traits {
                row.flatten("", "traits", traits);
            }
            let mut rows = vec![("identifies".to_string(), row)];
            if let Some(user_id) = common.user_id.as_deref() {
                let mut user = Row::new(user_id);
                user.time("received_at", common.received_at);
                if let Some(traits) = &traits {
                    user.flatten("", "traits", traits);
                }
                rows.push(("users".into(), user));
            }
            rows
        }
        Event::Page(page) => {
            row.text("name", page.name.as_deref());
            row.text("category", page.category.as_deref());
            if let Some(properties) = parsed(page.properties.as_ref()) {
                row.flatten("", "properties", &properties);
            }
            vec![("pages".into(), row)]
        }
        Event::Screen(screen) => {
            row.text("name", screen.name.as_deref());
            row.text("category", screen.category.as_deref());
            if let Some(properties) = parsed(screen.properties.as_ref()) {
                row.flatten("", "properties", &properties);
            }
            vec![("screens".into(), row)]
        }
        Event::Group(group) => {
            row.text("group_id", group.group_id.as_deref());
            if let Some(traits) = parsed(group.traits.as_ref()) {
                row.flatten("", "traits", &traits);
            }
            vec![("groups".into(), row)]
        }
        Event::Alias(alias) => {
            row.text("previous_id", alias.previous_id.as_deref());
            vec![("aliases".into(), row)]
        }
    }
}

/// The standard columns and the flattened context.
fn standard(common: &Common, id: &str) -> Row {
    let mut row = Row::new(id);
    row.time("received_at", common.received_at);
    row.time("sent_at", common.sent_at);
    row.time("timestamp", common.timestamp);
    row.time("original_timestamp", common.original_timestamp);
    row.text("user_id", common.user_id.as_deref());
    row.text("anonymous_id", common.anonymous_id.as_deref());
    // Reserve the names the type adds, so a property can't take them.
    for name in ["event", "event_text", "name", "category", "group_id", "previous_id"] {
        row.names.insert(hash(name));
    }
    if let Some(context) = &common.context {
        row.flatten("context", "context", context);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: Value) -> Event {
        serde_json::from_value(json).expect("event")
    }

    #[test]
    fn a_track_is_a_tracks_row_and_a_row_of_its_event_s_table_with_flattened_properties() {
        let rows = rows(&event(serde_json::json!({
            "type": "track", "messageId": "m1", "userId": "u1", "event": "Order Completed",
            "receivedAt": "2024-05-01T12:00:00.000Z",
            "context": {"library": {"name": "analytics-python"}, "ip": "203.0.113.7"},
            "properties": {"orderId": "o-1", "revenue": 12.5, "items": [1, 2], "shipping": {"Method Name": "air"},
                           "id": "collides", "paid": true, "count": 3, "at": "2024-05-01T11:00:00Z"}
        })));
        let tables: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(tables, ["tracks", "order_completed"]);
        let (_, tracks) = &rows[0];
        assert_eq!(tracks.id, "m1");
        assert_eq!(tracks.get("event"), Some(&Cell::Text("order_completed".into())));
        assert_eq!(tracks.get("event_text"), Some(&Cell::Text("Order Completed".into())));
        assert_eq!(tracks.get("order_id"), None, "properties only in the event's table");
        let (_, order) = &rows[1];
        assert_eq!(
            order.get("context_library_name"),
            Some(&Cell::Text("analytics-python".into()))
        );
        assert_eq!(order.get("order_id"), Some(&Cell::Text("o-1".into())));
        assert_eq!(order.get("revenue"), Some(&Cell::Float(12.5)));
        assert_eq!(order.get("count"), Some(&Cell::Int(3)));
        assert_eq!(order.get("paid"), Some(&Cell::Bool(true)));
        assert_eq!(order.get("items"), Some(&Cell::Json("[1,2]".into())));
        assert_eq!(order.get("shipping_method_name"), Some(&Cell::Text("air".into())));
        assert!(matches!(order.get("at"), Some(Cell::Time(_))));
        assert_eq!(order.get("id"), None);
        assert_eq!(
            order.overflow["properties.id"], "collides",
            "a colliding key is kept, not dropped"
        );
    }

    #[test]
    fn an_identify_with_a_user_id_also_makes_the_user_s_row() {
        let rows = rows(&event(serde_json::json!({
            "type": "identify", "messageId": "m2", "userId": "u1", "traits": {"email": "a@example.com", "plan": "pro"}
        })));
        assert_eq!(rows.len(), 2);
        let (table, user) = &rows[1];
        assert_eq!((table.as_str(), user.id.as_str()), ("users", "u1"));
        assert_eq!(user.get("plan"), Some(&Cell::Text("pro".into())));
        let anonymous = super::rows(&event(serde_json::json!({"type": "identify", "anonymousId": "a1"})));
        assert_eq!(anonymous.len(), 1, "no users row without a userId");
    }

    #[test]
    fn an_event_without_a_message_id_gets_a_stable_one() {
        let first = rows(&event(
            serde_json::json!({"type": "alias", "userId": "u1", "previousId": "a1"}),
        ));
        let again = rows(&event(
            serde_json::json!({"type": "alias", "userId": "u1", "previousId": "a1"}),
        ));
        assert!(first[0].1.id.starts_with("sha256:"));
        assert_eq!(
            first[0].1.id, again[0].1.id,
            "the same event, the same id: a replay adds nothing"
        );
    }

    #[test]
    fn names_are_snake_case_bounded_and_never_a_standard_table() {
        assert_eq!(event_table("Users"), "users_event");
        assert_eq!(event_table("Signed Up!"), "signed_up");
        assert_eq!(event_table("2fa enabled"), "_2fa_enabled");
        assert_eq!(event_table("☃"), "unnamed");
        assert_eq!(event_table(&"x".repeat(100)).len(), MAX_NAME);
        assert_eq!(identifier("web-app"), "web_app");
    }

    #[test]
    fn nul_characters_become_replacement_characters() {
        assert_eq!(
            Cell::from_json(&Value::String("a\0b".into())),
            Some(Cell::Text("a\u{fffd}b".into()))
        );
    }
}
