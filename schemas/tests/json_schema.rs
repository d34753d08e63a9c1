//! The JSON Schema documents under `schemas/json/` and the Rust types must agree: every
//! sample is judged by both, and both must give the same verdict.

use std::path::Path;

use jsonschema::{Resource, Validator};
use serde_json::{Value, json};
use switchyard_schemas::{Event, EventType, Limits, parse_batch, validate};

const BASE: &str = "https://switchyard.dev/schemas/";

fn load(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("json")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn validator(name: &str) -> Validator {
    let mut options = jsonschema::options().should_validate_formats(true);
    for other in ["common", "identify", "track", "page", "screen", "group", "alias"] {
        options = options.with_resource(format!("{BASE}{other}.json"), Resource::from_contents(load(other)));
    }
    options
        .build(&load(name))
        .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"))
}

fn rust_accepts(sample: &Value) -> bool {
    serde_json::from_value::<Event>(sample.clone()).is_ok_and(|event| validate(&event).is_ok())
}

fn valid_samples() -> Vec<Value> {
    vec![
        json!({"type": "identify", "userId": "u1", "traits": {"email": "a@example.com", "plan": "pro"},
               "timestamp": "2024-05-01T12:00:00.000Z", "context": {"ip": "203.0.113.9"}, "messageId": "m-1"}),
        json!({"type": "identify", "anonymousId": "anon-1", "userId": null, "traits": null}),
        json!({"type": "track", "userId": 42, "event": "Order Completed", "properties": {"revenue": 12.5},
               "sentAt": "2024-05-01T12:00:01+02:00", "integrations": {"All": true}, "customField": [1, 2]}),
        json!({"type": "page", "anonymousId": "a", "name": "Home", "category": null, "properties": {"url": "https://example.com"}}),
        json!({"type": "screen", "userId": "u", "name": "Settings", "originalTimestamp": "2024-05-01T00:00:00Z"}),
        json!({"type": "group", "userId": "u", "groupId": "acme", "traits": {"employees": 120}}),
        json!({"type": "group", "anonymousId": "a", "groupId": 7}),
        json!({"type": "alias", "previousId": "anon-1", "userId": "u1", "receivedAt": "2024-05-01T00:00:00Z"}),
    ]
}

fn invalid_samples() -> Vec<Value> {
    vec![
        json!({"type": "identify", "traits": {"email": "a@example.com"}}),
        json!({"type": "identify", "userId": ""}),
        json!({"type": "identify", "userId": true}),
        json!({"type": "track", "userId": "u"}),
        json!({"type": "track", "userId": "u", "event": ""}),
        json!({"type": "track", "userId": "u", "event": 5}),
        json!({"type": "track", "userId": "u", "event": "e", "timestamp": "yesterday"}),
        json!({"type": "track", "userId": "u", "event": "e", "timestamp": "2024-05-01T12:00:00"}),
        json!({"type": "track", "userId": "u", "event": "e", "properties": [1]}),
        json!({"type": "page", "userId": "u", "name": 3}),
        json!({"type": "screen", "anonymousId": "a", "context": "mobile"}),
        json!({"type": "group", "userId": "u"}),
        json!({"type": "alias", "previousId": "p"}),
        json!({"type": "alias", "previousId": "p", "anonymousId": "a"}),
        json!({"type": "alias", "userId": "u"}),
    ]
}

fn schema_for(sample: &Value) -> Option<&'static str> {
    let kind = sample.get("type")?.as_str()?;
    EventType::ALL.iter().map(|t| t.as_str()).find(|name| *name == kind)
}

#[test]
fn every_valid_sample_passes_both_the_schema_and_the_types() {
    for sample in valid_samples() {
        let name = schema_for(&sample).expect("sample has a known type");
        let errors: Vec<String> = validator(name).iter_errors(&sample).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}.json refuses {sample}: {errors:?}");
        assert!(rust_accepts(&sample), "Rust types refuse {sample}");
    }
}

#[test]
fn every_invalid_sample_fails_both_the_schema_and_the_types() {
    for sample in invalid_samples() {
        let name = schema_for(&sample).expect("sample has a known type");
        assert!(!validator(name).is_valid(&sample), "{name}.json accepts {sample}");
        assert!(!rust_accepts(&sample), "Rust types accept {sample}");
    }
}

#[test]
fn each_type_schema_refuses_the_other_types() {
    for sample in valid_samples() {
        let own = schema_for(&sample).expect("known type");
        for other in EventType::ALL.iter().map(|t| t.as_str()).filter(|name| *name != own) {
            assert!(
                !validator(other).is_valid(&sample),
                "{other}.json accepts a {own} event"
            );
        }
    }
}

#[test]
fn batch_schema_and_batch_parser_agree() {
    let limits = Limits::default();
    let good =
        json!({"batch": valid_samples(), "sentAt": "2024-05-01T12:00:00Z", "context": {"library": {"name": "x"}}});
    let mut too_many = json!({"batch": []});
    too_many["batch"] = Value::Array(vec![valid_samples()[0].clone(); limits.max_batch_events + 1]);
    let cases = [
        (good, true),
        (json!({"batch": []}), false),
        (json!({"sentAt": "2024-05-01T12:00:00Z"}), false),
        (
            json!({"batch": [valid_samples()[0].clone(), invalid_samples()[0].clone()]}),
            false,
        ),
        (json!({"batch": [{"userId": "u", "event": "no type"}]}), false),
        (
            json!({"batch": [valid_samples()[1].clone()], "sentAt": "not a time"}),
            false,
        ),
        (too_many, false),
    ];
    let schema = validator("batch");
    for (body, expected) in cases {
        let bytes = serde_json::to_vec(&body).expect("serialises");
        let short = body.to_string().chars().take(120).collect::<String>();
        assert_eq!(schema.is_valid(&body), expected, "batch.json verdict on {short}");
        assert_eq!(
            parse_batch(&bytes, &limits).is_ok(),
            expected,
            "parse_batch verdict on {short}"
        );
    }
}

#[test]
fn unknown_fields_survive_a_round_trip_through_the_types() {
    for sample in valid_samples() {
        let event: Event = serde_json::from_value(sample.clone()).expect("parses");
        let back = serde_json::to_value(&event).expect("serialises");
        for (key, value) in sample.as_object().expect("object") {
            if value.is_null() {
                continue;
            }
            let kept = &back[key];
            // Numbers given as identifiers come back as their decimal strings.
            let expected = match (key.as_str(), value) {
                ("userId" | "anonymousId" | "groupId" | "messageId" | "previousId", Value::Number(n)) => {
                    json!(n.to_string())
                }
                // Times come back as the same instant, written in UTC with milliseconds.
                (key, Value::String(text)) if key.ends_with("At") || key.ends_with("imestamp") => {
                    let parsed = chrono::DateTime::parse_from_rfc3339(text).expect("sample times are valid");
                    json!(
                        parsed
                            .with_timezone(&chrono::Utc)
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    )
                }
                _ => value.clone(),
            };
            assert_eq!(kept, &expected, "field {key} of {sample}");
        }
    }
}
