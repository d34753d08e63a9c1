//! One Segment event as Amplitude events (the table is in the module above).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use switchyard_schemas::{Event, RawObject};

/// One event of Amplitude's upload body; absent fields are left out.
#[derive(Debug, Default, Serialize)]
pub struct AmplitudeEvent<'a> {
    pub event_type: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insert_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_properties: Option<&'a RawObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_properties: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_properties: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_manufacturer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_lng: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idfa: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revenue: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    #[serde(rename = "productId", skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(rename = "revenueType", skip_serializing_if = "Option::is_none")]
    pub revenue_type: Option<String>,
}

/// The revenue fields of a track's properties, read without building the whole tree.
#[derive(Deserialize, Default)]
struct Revenue {
    revenue: Option<Value>,
    price: Option<Value>,
    quantity: Option<Value>,
    #[serde(rename = "productId", alias = "product_id")]
    product_id: Option<Value>,
    #[serde(rename = "revenueType", alias = "revenue_type")]
    revenue_type: Option<Value>,
}

/// A number, or a string holding one (many clients send `"42.50"`).
fn number(value: &Option<Value>) -> Option<f64> {
    match value.as_ref()? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

fn text(value: &Option<Value>) -> Option<String> {
    match value.as_ref()? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn at<'a>(object: Option<&'a Map<String, Value>>, path: &[&str]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut current = object?;
    for key in parents {
        current = current.get(*key)?.as_object()?;
    }
    current.get(*last)
}

fn str_at<'a>(object: Option<&'a Map<String, Value>>, path: &[&str]) -> Option<&'a str> {
    at(object, path).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|s| !s.is_empty())
}

/// What every Amplitude event made from this Segment event carries: who, when, and
/// the device, app and place from `context`.
fn base<'a>(event: &'a Event, event_type: Cow<'a, str>) -> AmplitudeEvent<'a> {
    let common = event.common();
    let context = common.context.as_ref();
    let device_type = str_at(context, &["device", "type"]);
    let advertising_id = str_at(context, &["device", "advertisingId"]);
    let library = match (
        str_at(context, &["library", "name"]),
        str_at(context, &["library", "version"]),
    ) {
        (Some(name), Some(version)) => Some(format!("{name}/{version}")),
        (Some(name), None) => Some(name.to_string()),
        _ => None,
    };
    AmplitudeEvent {
        event_type,
        user_id: non_empty(common.user_id.as_deref()),
        device_id: non_empty(common.anonymous_id.as_deref()).or(str_at(context, &["device", "id"])),
        time: common.timestamp.map(|t| t.timestamp_millis()),
        insert_id: common.message_id.as_deref().map(Cow::Borrowed),
        session_id: at(common.integrations.as_ref(), &["Amplitude", "session_id"]).and_then(Value::as_i64),
        library,
        ip: str_at(context, &["ip"]),
        platform: device_type,
        os_name: str_at(context, &["os", "name"]),
        os_version: str_at(context, &["os", "version"]),
        device_manufacturer: str_at(context, &["device", "manufacturer"]),
        device_model: str_at(context, &["device", "model"]),
        carrier: str_at(context, &["network", "carrier"]),
        app_version: str_at(context, &["app", "version"]),
        language: str_at(context, &["locale"]),
        country: str_at(context, &["location", "country"]),
        region: str_at(context, &["location", "region"]),
        city: str_at(context, &["location", "city"]),
        location_lat: at(context, &["location", "latitude"]).and_then(Value::as_f64),
        location_lng: at(context, &["location", "longitude"]).and_then(Value::as_f64),
        idfa: advertising_id.filter(|_| device_type.is_some_and(|t| t.eq_ignore_ascii_case("ios"))),
        adid: advertising_id.filter(|_| device_type.is_some_and(|t| t.eq_ignore_ascii_case("android"))),
        ..AmplitudeEvent::default()
    }
}

/// `{"$set": <the object>}`: Amplitude's operation that sets user (or group) properties.
fn set(object: Option<&RawObject>) -> Value {
    let properties = object
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .unwrap_or_else(|| json!({}));
    json!({ "$set": properties })
}

fn viewed<'a>(name: Option<&'a str>, what: &str) -> Cow<'a, str> {
    match non_empty(name) {
        Some(name) => Cow::Owned(format!("Viewed {name} {what}")),
        None => Cow::Owned(format!("Loaded a {what}")),
    }
}

/// The Amplitude events for one Segment event, in the order they are sent.
pub fn amplitude_events<'a>(event: &'a Event, group_type: &'a str) -> Vec<AmplitudeEvent<'a>> {
    match event {
        Event::Identify(identify) => {
            let mut out = base(event, Cow::Borrowed("$identify"));
            out.user_properties = Some(set(identify.traits.as_ref()));
            vec![out]
        }
        Event::Track(track) => {
            let mut out = base(event, Cow::Borrowed(track.event.as_deref().unwrap_or_default()));
            out.event_properties = track.properties.as_ref();
            if let Some(properties) = &track.properties {
                revenue(&mut out, properties);
            }
            vec![out]
        }
        Event::Page(page) => {
            let mut out = base(event, viewed(page.name.as_deref(), "Page"));
            out.event_properties = page.properties.as_ref();
            vec![out]
        }
        Event::Screen(screen) => {
            let mut out = base(event, viewed(screen.name.as_deref(), "Screen"));
            out.event_properties = screen.properties.as_ref();
            vec![out]
        }
        Event::Group(group) => {
            let group_id = group.group_id.as_deref().unwrap_or_default();
            let groups = json!({ group_type: group_id });
            // Amplitude's own setGroup: the user joins the group, which is also a user property.
            let mut joins = base(event, Cow::Borrowed("$identify"));
            joins.groups = Some(groups.clone());
            joins.user_properties = Some(json!({"$set": { group_type: group_id }}));
            let mut out = vec![joins];
            if group.traits.as_ref().is_some_and(|t| t.get().trim() != "{}") {
                let mut describes = base(event, Cow::Borrowed("$groupidentify"));
                describes.insert_id = common_id(event, "group");
                describes.groups = Some(groups);
                describes.group_properties = Some(set(group.traits.as_ref()));
                out.push(describes);
            }
            out
        }
        Event::Alias(alias) => {
            // An event with both ids is how Amplitude learns they are one person.
            let mut out = base(event, Cow::Borrowed("$identify"));
            out.device_id = non_empty(alias.previous_id.as_deref()).or(out.device_id);
            out.user_properties = Some(json!({"$set": {}}));
            vec![out]
        }
    }
}

/// A second event's insert id: the messageId with a suffix, the same on every retry.
fn common_id<'a>(event: &'a Event, suffix: &str) -> Option<Cow<'a, str>> {
    event.message_id().map(|id| Cow::Owned(format!("{id}:{suffix}")))
}

/// Amplitude's revenue fields: `revenue`, or `price` (with `quantity`, 1 if absent);
/// `productId` and `revenueType` only beside one of them, as Amplitude requires.
fn revenue(out: &mut AmplitudeEvent<'_>, properties: &RawObject) {
    let text_of = properties.get();
    if !text_of.contains("revenue") && !text_of.contains("price") {
        return;
    }
    let fields: Revenue = serde_json::from_str(text_of).unwrap_or_default();
    out.revenue = number(&fields.revenue);
    out.price = number(&fields.price);
    if out.price.is_some() {
        out.quantity = number(&fields.quantity).map(|q| q as i64);
    }
    if out.revenue.is_some() || out.price.is_some() {
        out.product_id = text(&fields.product_id);
        out.revenue_type = text(&fields.revenue_type);
    }
}
