//! Each preset's mapping of a provider's payload to one Segment `track` event. The
//! provider's own event id becomes the messageId, so a provider's retry is the same
//! event to the router's dedup. Decisions, per provider:
//!
//! - Stripe: `charge.succeeded` → "Charge Succeeded"; the object's `customer` is the
//!   userId (else anonymousId `stripe:<object id>`); properties: `amount`, `currency`,
//!   `status`, `customer`, `object`, `object_id`, `livemode`; timestamp from `created`.
//! - GitHub (`X-GitHub-Event`, `X-GitHub-Delivery`): `issues` + action `opened` →
//!   "Issues Opened"; the sender's login is the userId; properties: `action`,
//!   `repository`, `sender`, `ref`.
//! - Shopify (`X-Shopify-Topic`, `X-Shopify-Webhook-Id`): `orders/create` → "Orders
//!   Create"; the customer's id (else the email) is the userId; properties: `id`,
//!   `total_price`, `currency`, `email`, `financial_status`.
//! - Intercom: topic `conversation.user.created` → "Conversation User Created"; the
//!   item's user (`user_id`, else `id`) is the userId; properties: `item_type`, `item_id`.
//! - Generic: a payload that is already a Segment event (it has `type`) passes as it
//!   is; any other becomes "Webhook Received" with the payload as properties.
//!
//! With no id from the provider, the messageId is a digest of the body, so a retried
//! identical delivery is still one event.

use actix_web::http::header::HeaderMap;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use switchyard_config::WebhookPreset;

/// "charge.succeeded" → "Charge Succeeded"; "orders/create" → "Orders Create".
pub fn event_name(code: &str) -> String {
    code.split(['.', '_', '/', ' '])
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars.flat_map(char::to_lowercase)).collect()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Keeps the listed fields of `object` that are present.
fn pick(object: &Value, fields: &[(&str, &str)]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|(property, field)| {
            let value = object.pointer(field)?;
            (!value.is_null()).then(|| (property.to_string(), value.clone()))
        })
        .collect()
}

fn body_digest(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// The preset's event for this delivery; an error names what the payload lacks.
pub fn map(preset: WebhookPreset, payload: &Value, headers: &HeaderMap, body: &[u8]) -> Result<Value, String> {
    let needs = |what: &str| format!("the payload has no {what}");
    let (event, message_id, user, properties, timestamp) = match preset {
        WebhookPreset::Stripe => {
            let code = payload["type"].as_str().ok_or_else(|| needs("type"))?;
            let object = &payload["data"]["object"];
            let properties = pick(
                object,
                &[
                    ("amount", "/amount"),
                    ("currency", "/currency"),
                    ("status", "/status"),
                    ("customer", "/customer"),
                    ("object", "/object"),
                    ("object_id", "/id"),
                    ("livemode", "/livemode"),
                ],
            );
            let user = match text(&object["customer"]) {
                Some(customer) => ("userId", customer),
                None => (
                    "anonymousId",
                    format!("stripe:{}", text(&object["id"]).ok_or_else(|| needs("data.object.id"))?),
                ),
            };
            let created = payload["created"].as_i64();
            (event_name(code), text(&payload["id"]), user, properties, created)
        }
        WebhookPreset::Github => {
            let kind = header(headers, "x-github-event").ok_or("the X-GitHub-Event header is missing")?;
            let action = payload["action"].as_str();
            let name = match action {
                Some(action) => format!("{kind}.{action}"),
                None => kind,
            };
            let properties = pick(
                payload,
                &[
                    ("action", "/action"),
                    ("repository", "/repository/full_name"),
                    ("sender", "/sender/login"),
                    ("ref", "/ref"),
                ],
            );
            let sender = text(&payload["sender"]["login"]).ok_or_else(|| needs("sender.login"))?;
            (
                event_name(&name),
                header(headers, "x-github-delivery"),
                ("userId", sender),
                properties,
                None,
            )
        }
        WebhookPreset::Shopify => {
            let topic = header(headers, "x-shopify-topic").ok_or("the X-Shopify-Topic header is missing")?;
            let properties = pick(
                payload,
                &[
                    ("id", "/id"),
                    ("total_price", "/total_price"),
                    ("currency", "/currency"),
                    ("email", "/email"),
                    ("financial_status", "/financial_status"),
                ],
            );
            let user = text(&payload["customer"]["id"])
                .or_else(|| text(&payload["email"]))
                .map(|user| ("userId", user))
                .unwrap_or_else(|| {
                    (
                        "anonymousId",
                        format!("shopify:{}", text(&payload["id"]).unwrap_or_default()),
                    )
                });
            (
                event_name(&topic),
                header(headers, "x-shopify-webhook-id"),
                user,
                properties,
                None,
            )
        }
        WebhookPreset::Intercom => {
            let topic = payload["topic"].as_str().ok_or_else(|| needs("topic"))?;
            let item = &payload["data"]["item"];
            let properties = pick(item, &[("item_type", "/type"), ("item_id", "/id")]);
            let user = text(&item["user"]["user_id"])
                .or_else(|| text(&item["user"]["id"]))
                .ok_or_else(|| needs("data.item.user"))?;
            let created = payload["created_at"].as_i64();
            (
                event_name(topic),
                text(&payload["id"]),
                ("userId", user),
                properties,
                created,
            )
        }
        WebhookPreset::Generic => {
            if payload.get("type").is_some() {
                let mut event = payload.clone();
                if event.get("messageId").is_none()
                    && let Some(object) = event.as_object_mut()
                {
                    let id = text(&payload["id"]).unwrap_or_else(|| body_digest(body));
                    object.insert("messageId".into(), Value::from(id));
                }
                return Ok(event);
            }
            let properties = payload.as_object().cloned().ok_or("the payload is not a JSON object")?;
            let user = text(&payload["userId"])
                .or_else(|| text(&payload["user_id"]))
                .map(|user| ("userId", user))
                .unwrap_or_else(|| ("anonymousId", "webhook".to_string()));
            (
                "Webhook Received".to_string(),
                text(&payload["id"]),
                user,
                properties,
                None,
            )
        }
    };
    let mut event = json!({
        "type": "track",
        "event": event,
        "messageId": message_id.unwrap_or_else(|| body_digest(body)),
        "properties": properties,
        "context": {"library": {"name": format!("switchyard-webhook-{}", preset_name(preset))}},
    });
    event[user.0] = Value::from(user.1);
    if let Some(at) = timestamp.and_then(|secs| chrono::DateTime::from_timestamp(secs, 0)) {
        event["timestamp"] = Value::from(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    Ok(event)
}

pub fn preset_name(preset: WebhookPreset) -> &'static str {
    match preset {
        WebhookPreset::Stripe => "stripe",
        WebhookPreset::Github => "github",
        WebhookPreset::Shopify => "shopify",
        WebhookPreset::Intercom => "intercom",
        WebhookPreset::Generic => "generic",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_like_segment_events() {
        assert_eq!(event_name("charge.succeeded"), "Charge Succeeded");
        assert_eq!(event_name("orders/create"), "Orders Create");
        assert_eq!(event_name("conversation.user.created"), "Conversation User Created");
        assert_eq!(event_name("pull_request.opened"), "Pull Request Opened");
    }

    #[test]
    fn a_stripe_charge_becomes_a_track_of_its_customer() {
        let payload = json!({"id": "evt_1", "type": "charge.succeeded", "created": 1_700_000_000,
            "data": {"object": {"id": "ch_1", "object": "charge", "amount": 2000, "currency": "usd", "customer": "cus_9"}}});
        let event = map(WebhookPreset::Stripe, &payload, &HeaderMap::new(), b"{}").expect("maps");
        assert_eq!(event["event"], "Charge Succeeded");
        assert_eq!(event["messageId"], "evt_1");
        assert_eq!(event["userId"], "cus_9");
        assert_eq!(event["properties"]["amount"], 2000);
        assert_eq!(event["properties"]["currency"], "usd");
        assert_eq!(event["timestamp"], "2023-11-14T22:13:20.000Z");
        let broken = map(WebhookPreset::Stripe, &json!({"id": "evt_2"}), &HeaderMap::new(), b"{}");
        assert_eq!(broken, Err("the payload has no type".into()));
    }
}
