//! A compiled transform chain: its steps checked once when the configuration is
//! loaded, then run on each event, in place on its sections when every step allows
//! (`sections.rs`), else on the event as JSON (`ops.rs`).

use std::sync::Arc;

use serde_json::{Map, Value};
use switchyard_schemas::{Event, validate};

use super::condition::Condition;
use super::ops::{
    REQUIRED, Step, TransformConfig, TransformError, Transformed, get, hash_at, insert, redact_at, remove, rename, run,
    sampled,
};
use super::sections;

/// A compiled transform chain.
#[derive(Debug, Clone, Default)]
pub struct Transform {
    /// Shared: every source's actor of a destination runs the same chain.
    steps: Arc<[Step]>,
    /// Every step touches only fields inside `context`, `properties` or `traits` (or
    /// samples): those parts are changed in place, without re-encoding the event.
    sections: bool,
}

fn path(text: &str) -> Vec<String> {
    text.split('.').map(str::to_string).collect()
}

impl Transform {
    /// Compiles a chain; errors name the step and, for conditions, the position.
    pub fn compile(configs: &[TransformConfig]) -> Result<Self, TransformError> {
        let mut steps = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let bad = |reason: String| TransformError::Config { index, reason };
            let paths = |fields: &[String]| -> Result<Vec<Vec<String>>, TransformError> {
                if fields.is_empty() {
                    return Err(bad("fields must name at least one field".into()));
                }
                if let Some(empty) = fields.iter().find(|f| f.split('.').any(str::is_empty)) {
                    return Err(bad(format!(
                        "field {empty:?} is not a dotted path like properties.email"
                    )));
                }
                Ok(fields.iter().map(|f| path(f)).collect())
            };
            steps.push(match config {
                TransformConfig::DropIf { condition } => Step::DropIf(Condition::compile(condition).map_err(bad)?),
                TransformConfig::Rename { from, to } => {
                    let mut both = paths(&[from.clone(), to.clone()])?;
                    let to = both.pop().unwrap_or_default();
                    Step::Rename(both.pop().unwrap_or_default(), to)
                }
                TransformConfig::DropFields { fields } => Step::DropFields(paths(fields)?),
                TransformConfig::AllowFields { fields } => Step::AllowFields(paths(fields)?),
                TransformConfig::Hash { fields, salt } => {
                    if salt.len() < 8 {
                        return Err(bad("salt must be at least 8 characters".into()));
                    }
                    Step::Hash(paths(fields)?, salt.clone())
                }
                TransformConfig::Redact { fields } => Step::Redact(paths(fields)?),
                TransformConfig::Sample { rate } => {
                    if !(0.0..=1.0).contains(rate) {
                        return Err(bad(format!("rate {rate} must be between 0 and 1")));
                    }
                    Step::Sample(*rate)
                }
            });
        }
        let sections = sections::eligible(&steps);
        Ok(Transform {
            steps: steps.into(),
            sections,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs the chain. The result must still be a valid event.
    pub fn apply(&self, event: Event) -> Result<Transformed, TransformError> {
        if self.steps.is_empty() {
            return Ok(Transformed::Keep(event));
        }
        let event = if self.sections {
            match sections::apply(&self.steps, event) {
                Ok(done) => return done,
                Err(event) => event,
            }
        } else {
            event
        };
        let message_id = event.message_id().unwrap_or_default().to_string();
        let mut value = serde_json::to_value(&event).map_err(|e| run("encode", e.to_string()))?;
        for step in self.steps.iter() {
            match step {
                Step::DropIf(condition) => {
                    if condition.matches(&value).map_err(|reason| run("drop_if", reason))? {
                        return Ok(Transformed::Filtered);
                    }
                }
                Step::Rename(from, to) => rename(&mut value, from, to)?,
                Step::DropFields(paths) => {
                    for path in paths {
                        remove(&mut value, path);
                    }
                }
                Step::AllowFields(paths) => {
                    let mut kept = Value::Object(Map::new());
                    for key in REQUIRED {
                        if let Some(field) = value.get(key) {
                            insert(&mut kept, &[key.to_string()], field.clone()).map_err(|r| run("allow_fields", r))?;
                        }
                    }
                    for path in paths {
                        if let Some(field) = get(&value, path) {
                            insert(&mut kept, path, field.clone()).map_err(|r| run("allow_fields", r))?;
                        }
                    }
                    value = kept;
                }
                Step::Hash(paths, salt) => {
                    for path in paths {
                        hash_at(&mut value, path, salt);
                    }
                }
                Step::Redact(paths) => {
                    for path in paths {
                        redact_at(&mut value, path);
                    }
                }
                Step::Sample(rate) => {
                    if !sampled(&message_id, *rate) {
                        return Ok(Transformed::Filtered);
                    }
                }
            }
        }
        let event: Event = serde_json::from_value(value).map_err(|e| run("decode", e.to_string()))?;
        validate(&event).map_err(|e| run("validate", format!("the transformed event is no longer valid: {e}")))?;
        Ok(Transformed::Keep(event))
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use serde_json::json;

    fn event(value: Value) -> Event {
        serde_json::from_value(value).expect("sample parses")
    }

    fn sample() -> Event {
        event(json!({
            "type": "track", "userId": "u1", "event": "Signed Up", "messageId": "m-1",
            "properties": {"email": "ada@example.com", "plan": "pro", "phone": "+44 1234"},
            "context": {"ip": "203.0.113.9", "locale": "en-GB"}
        }))
    }

    fn apply(configs: Vec<TransformConfig>, input: Event) -> Value {
        let transform = Transform::compile(&configs).expect("compiles");
        match transform.apply(input).expect("runs") {
            Transformed::Keep(event) => serde_json::to_value(event).expect("serialises"),
            Transformed::Filtered => Value::Null,
        }
    }

    #[test]
    fn the_section_fast_path_gives_what_the_general_path_gives() {
        let fields = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let chains = vec![
            vec![TransformConfig::Redact {
                fields: fields(&["context.userAgent", "properties.email", "context.missing"]),
            }],
            vec![
                TransformConfig::Hash {
                    fields: fields(&["traits.email", "context.ip"]),
                    salt: "salty-salt".into(),
                },
                TransformConfig::Rename {
                    from: "properties.plan".into(),
                    to: "properties.tier.name".into(),
                },
                TransformConfig::DropFields {
                    fields: fields(&["context.locale", "properties.phone"]),
                },
            ],
            vec![
                TransformConfig::Rename {
                    from: "context.ip".into(),
                    to: "context.network.ip".into(),
                },
                TransformConfig::Sample { rate: 0.5 },
            ],
        ];
        let events = [
            sample(),
            event(json!({"type": "identify", "userId": "u2", "messageId": "m-2",
                         "traits": {"email": "bo@example.com", "plan": "free"}, "context": {"ip": "198.51.100.1"}})),
            event(json!({"type": "identify", "userId": "u3", "messageId": "m-3",
                         "properties": {"email": "not-a-trait@example.com", "plan": "x"}})),
            event(json!({"type": "track", "userId": "u4", "event": "Bare", "messageId": "m-4"})),
            event(
                json!({"type": "page", "userId": "u5", "name": "Home", "messageId": "m-5",
                         "properties": {"plan": "pro", "email": "cy@example.com"}, "context": {"userAgent": "x"}}),
            ),
        ];
        for chain in chains {
            let fast = Transform::compile(&chain).expect("compiles");
            assert!(fast.sections, "{chain:?} runs on sections");
            let general = Transform {
                sections: false,
                ..fast.clone()
            };
            for input in &events {
                let outcome = |transform: &Transform| match transform.apply(input.clone()).expect("runs") {
                    Transformed::Keep(event) => serde_json::to_value(event).expect("serialises"),
                    Transformed::Filtered => Value::Null,
                };
                assert_eq!(outcome(&fast), outcome(&general), "{chain:?} on {input:?}");
            }
        }
        let conditional = vec![TransformConfig::DropIf {
            condition: ".event == \"x\"".into(),
        }];
        assert!(!Transform::compile(&conditional).expect("compiles").sections);
    }

    #[test]
    fn drop_if_filters_matching_events_only() {
        let drop_heartbeats = || {
            vec![TransformConfig::DropIf {
                condition: r#".event == "Heartbeat""#.into(),
            }]
        };
        assert_eq!(
            apply(
                drop_heartbeats(),
                event(json!({"type": "track", "userId": "u", "event": "Heartbeat"}))
            ),
            Value::Null
        );
        assert_eq!(apply(drop_heartbeats(), sample())["event"], "Signed Up");
    }

    #[test]
    fn rename_drop_and_allow_list_fields() {
        let out = apply(
            vec![
                TransformConfig::Rename {
                    from: "properties.email".into(),
                    to: "traits.email".into(),
                },
                TransformConfig::DropFields {
                    fields: vec!["properties.phone".into()],
                },
            ],
            sample(),
        );
        assert_eq!(out["traits"]["email"], "ada@example.com");
        assert!(out["properties"].get("email").is_none() && out["properties"].get("phone").is_none());
        assert_eq!(out["properties"]["plan"], "pro");

        let out = apply(
            vec![TransformConfig::AllowFields {
                fields: vec!["properties.plan".into()],
            }],
            sample(),
        );
        assert_eq!(out["properties"], json!({"plan": "pro"}));
        assert!(out.get("context").is_none());
        assert_eq!(
            (out["type"].clone(), out["userId"].clone(), out["event"].clone()),
            (json!("track"), json!("u1"), json!("Signed Up"))
        );
    }

    #[test]
    fn hash_and_redact_pii() {
        let out = apply(
            vec![
                TransformConfig::Hash {
                    fields: vec!["properties.email".into()],
                    salt: "pepper-123".into(),
                },
                TransformConfig::Redact {
                    fields: vec!["context.ip".into(), "properties.missing".into()],
                },
            ],
            sample(),
        );
        let expected = hex::encode(Sha256::digest(b"pepper-123ada@example.com"));
        assert_eq!(out["properties"]["email"], json!(expected));
        assert_eq!(out["context"]["ip"], "[redacted]");
        assert!(out["properties"].get("missing").is_none(), "absent fields stay absent");
    }

    #[test]
    fn sampling_keeps_about_the_rate_and_decides_alike_for_a_messageid() {
        let transform = Transform::compile(&[TransformConfig::Sample { rate: 0.25 }]).expect("compiles");
        let kept = (0..4000)
            .filter(|i| {
                let input =
                    event(json!({"type": "track", "userId": "u", "event": "e", "messageId": format!("id-{i}")}));
                matches!(transform.apply(input), Ok(Transformed::Keep(_)))
            })
            .count();
        assert!((850..1150).contains(&kept), "kept {kept} of 4000 at 25%");
        let again = |id: &str| {
            matches!(
                transform.apply(event(json!({"type": "page", "userId": "u", "messageId": id}))),
                Ok(Transformed::Keep(_))
            )
        };
        assert_eq!(again("fixed"), again("fixed"));
    }

    #[test]
    fn bad_configurations_are_refused_with_where() {
        let error = Transform::compile(&[
            TransformConfig::Redact {
                fields: vec!["context.ip".into()],
            },
            TransformConfig::DropIf {
                condition: ".event ==".into(),
            },
        ])
        .expect_err("incomplete condition");
        assert!(error.to_string().starts_with("transforms[1]: condition"), "{error}");
        let error = Transform::compile(&[TransformConfig::Sample { rate: 1.5 }]).expect_err("bad rate");
        assert_eq!(error.to_string(), "transforms[0]: rate 1.5 must be between 0 and 1");
        let error = Transform::compile(&[TransformConfig::Hash {
            fields: vec!["a".into()],
            salt: "x".into(),
        }])
        .expect_err("weak salt");
        assert!(error.to_string().contains("salt"), "{error}");
    }

    #[test]
    fn a_transform_that_breaks_the_event_is_an_error_not_a_silent_drop() {
        let transform = Transform::compile(&[TransformConfig::DropFields {
            fields: vec!["event".into()],
        }])
        .expect("compiles");
        let error = transform
            .apply(sample())
            .expect_err("a track without an event name is invalid");
        assert!(error.to_string().contains("no longer valid"), "{error}");
    }
}
