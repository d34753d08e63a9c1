//! A webhook source's settings with its mapping compiled.

use actix_web::HttpRequest;
use serde_json::Value;
use switchyard_config::WebhookSourceConfig;

use super::map::map;
use switchyard_transform::Remap;

/// A webhook source's settings, its mapping compiled.
#[derive(Debug)]
pub struct Webhook {
    pub config: WebhookSourceConfig,
    remap: Option<Remap>,
}

impl Webhook {
    /// Checks the settings (the mapping compiles).
    pub fn new(config: &WebhookSourceConfig) -> Result<Webhook, String> {
        Ok(Webhook {
            config: config.clone(),
            remap: config.mapping.as_deref().map(Remap::compile).transpose()?,
        })
    }

    /// The delivery's event: None when the mapping dropped it; an error is the reason
    /// it goes to the dead-letter topic.
    pub fn event(&self, payload: &Value, request: &HttpRequest, body: &[u8]) -> Result<Option<Value>, String> {
        let event = map(self.config.preset, payload, request.headers(), body)?;
        let Some(remap) = &self.remap else {
            return Ok(Some(event));
        };
        let headers: serde_json::Map<String, Value> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str().to_string(), Value::from(value.to_str().ok()?))))
            .collect();
        remap.run(event, payload, Value::Object(headers))
    }
}
