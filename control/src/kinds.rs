//! The destination kinds a workspace can use, for the admin API and a console's forms:
//! each kind's settings as a JSON Schema generated from its serde type (so the schema
//! and what `apply` accepts cannot drift apart), the settings that are credentials
//! (given in `credentials`, sealed, never shown: `writeOnly` in the schema), and the
//! settings that say where it connects (changing one asks for the credentials again).

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use switchyard_config::{
    AmplitudeConfig, BlackholeConfig, ExportConfig, KafkaDestinationConfig, MixpanelConfig, SegmentConfig,
    WarehouseConfig, WebhookConfig,
};

use crate::credentials;
use crate::store::endpoint_settings;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DestinationKindInfo {
    /// The `kind` a destination names.
    pub kind: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// JSON Schema (draft 2020-12) of the kind's settings and credentials together;
    /// unknown keys are refused.
    #[schema(value_type = Object)]
    pub settings_schema: Value,
    /// Settings that are secrets, as dotted paths (`tls.client_key_pem`): they go in
    /// `credentials`, never in `settings`.
    pub credentials: Vec<String>,
    /// Settings that say where the destination connects.
    pub endpoint_settings: Vec<&'static str>,
}

fn info<T: JsonSchema>(kind: &'static str, title: &'static str, description: &'static str) -> DestinationKindInfo {
    let mut settings_schema = schemars::schema_for!(T).to_value();
    let credentials = credentials::secret_paths(kind);
    if let Some(properties) = settings_schema.get_mut("properties").and_then(Value::as_object_mut) {
        for path in &credentials {
            // A whole setting that is secret; a secret inside a table is named by its path.
            if let Some(Value::Object(property)) = properties.get_mut(path.as_str()) {
                property.insert("writeOnly".into(), Value::Bool(true));
            }
        }
    }
    DestinationKindInfo {
        kind,
        title,
        description,
        settings_schema,
        credentials,
        endpoint_settings: endpoint_settings(kind).to_vec(),
    }
}

/// Every kind, in the order a catalog shows them.
pub fn destination_kinds() -> Vec<DestinationKindInfo> {
    vec![
        info::<WebhookConfig>(
            "webhook",
            "Webhook",
            "Each event, or a batch of them, POSTed as JSON to your URL, signed with HMAC-SHA256.",
        ),
        info::<SegmentConfig>(
            "segment",
            "Segment-compatible API",
            "Events forwarded unchanged to Segment, RudderStack or another Switchyard through /v1/batch.",
        ),
        info::<AmplitudeConfig>(
            "amplitude",
            "Amplitude",
            "Events, user and group properties sent to Amplitude's HTTP V2 API (US or EU), deduplicated by messageId.",
        ),
        info::<MixpanelConfig>(
            "mixpanel",
            "Mixpanel",
            "Events through /import (strict), user profiles through /engage and group profiles through /groups.",
        ),
        info::<KafkaDestinationConfig>(
            "kafka",
            "Kafka topic",
            "Each event as a record of a topic on your cluster, keyed by user.",
        ),
        info::<WarehouseConfig>(
            "postgres_warehouse",
            "Postgres warehouse",
            "Segment's warehouse schema in your Postgres database, loaded in batches with COPY.",
        ),
        info::<ExportConfig>(
            "object_storage_export",
            "Object storage export",
            "Batches of events as gzip JSON lines in your S3-compatible bucket.",
        ),
        info::<BlackholeConfig>(
            "blackhole",
            "Blackhole",
            "Takes every event and discards it: for trying a configuration or measuring the router.",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_schema_that_accepts_its_settings_and_refuses_unknown_keys() {
        let samples = [
            (
                "webhook",
                serde_json::json!({"url": "https://hooks.example.com/in", "signing_secret": "s"}),
            ),
            (
                "segment",
                serde_json::json!({"write_key": "wk", "endpoint": "https://api.segment.io"}),
            ),
            ("amplitude", serde_json::json!({"api_key": "k", "region": "eu"})),
            (
                "mixpanel",
                serde_json::json!({"project_token": "t", "region": "in", "gzip": false}),
            ),
            (
                "kafka",
                serde_json::json!({"brokers": "kafka.example.com:9092", "topic": "events"}),
            ),
            (
                "postgres_warehouse",
                serde_json::json!({"url": "postgres://loader@db.example.com/w"}),
            ),
            (
                "object_storage_export",
                serde_json::json!({"bucket": "b", "access_key_id": "a", "secret_access_key": "s"}),
            ),
            ("blackhole", serde_json::json!({})),
        ];
        let kinds = destination_kinds();
        assert_eq!(
            kinds.iter().map(|k| k.kind).collect::<Vec<_>>(),
            samples.iter().map(|(kind, _)| *kind).collect::<Vec<_>>()
        );
        for (info, (kind, sample)) in kinds.iter().zip(samples) {
            // The kind name is the one the configuration takes.
            let mut destination = serde_json::json!({"id": "d", "sources": ["web"], "kind": kind});
            destination
                .as_object_mut()
                .expect("object")
                .extend(sample.as_object().expect("object").clone());
            serde_json::from_value::<switchyard_config::DestinationConfig>(destination)
                .unwrap_or_else(|error| panic!("{kind}: {error}"));
            let validator = jsonschema::validator_for(&info.settings_schema).expect("a valid JSON Schema");
            assert!(
                validator.is_valid(&sample),
                "{kind}: {sample} against {}",
                info.settings_schema
            );
            let mut typo = sample.clone();
            typo.as_object_mut()
                .expect("object")
                .insert("bogus_key".into(), 5.into());
            assert!(!validator.is_valid(&typo), "{kind} accepts an unknown key");
        }
        let segment = &kinds[1];
        assert_eq!(segment.credentials, ["write_key"]);
        assert_eq!(segment.settings_schema["properties"]["write_key"]["writeOnly"], true);
        assert_eq!(segment.endpoint_settings, ["endpoint"]);
        assert_eq!(
            segment.settings_schema["properties"]["endpoint"]["default"],
            "https://api.segment.io"
        );
        let webhook = &kinds[0];
        assert!(
            webhook.credentials.contains(&"tls.client_key_pem".to_string()),
            "{:?}",
            webhook.credentials
        );
    }
}
