//! A webhook source's own mapping, in VRL (see `program.rs`). It runs after the preset's mapping
//! with `.event` (the mapped event), `.payload` (the provider's JSON) and `.headers`
//! (the request's headers, lowercase), and the event is whatever `.event` holds after
//! it: an object, or null to accept the delivery and drop it.

use serde_json::Value as Json;

use crate::program::Program;

#[derive(Debug, Clone)]
pub struct Remap {
    program: Program,
}

impl Remap {
    /// Compiles the program; the error shows where in it the problem is.
    pub fn compile(source: &str) -> Result<Remap, String> {
        Ok(Remap {
            program: Program::compile("webhook.mapping", source)?,
        })
    }

    /// The event after the program; None when it set `.event` to null.
    pub fn run(&self, event: Json, payload: &Json, headers: Json) -> Result<Option<Json>, String> {
        let input = serde_json::json!({"event": event, "payload": payload, "headers": headers});
        let run = self
            .program
            .run(input)
            .map_err(|error| format!("webhook mapping failed: {error}"))?;
        let output = serde_json::to_value(&run.target).map_err(|error| format!("webhook mapping output: {error}"))?;
        match output.get("event") {
            None | Some(Json::Null) => Ok(None),
            Some(event @ Json::Object(_)) => Ok(Some(event.clone())),
            Some(other) => Err(format!("webhook mapping left .event as {other}, not an object or null")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mapping_extends_replaces_or_drops_the_event() {
        let extend = Remap::compile(".event.properties.plan = .payload.data.object.plan").expect("compiles");
        let event = extend
            .run(
                json!({"event": "Paid", "properties": {}}),
                &json!({"data": {"object": {"plan": "pro"}}}),
                json!({}),
            )
            .expect("runs")
            .expect("an event");
        assert_eq!(event["properties"]["plan"], "pro");
        let drop = Remap::compile("if .payload.livemode == false { .event = null }").expect("compiles");
        assert_eq!(
            drop.run(json!({}), &json!({"livemode": false}), json!({}))
                .expect("runs"),
            None
        );
        let bad = Remap::compile(".event = 42").expect("compiles");
        assert!(bad.run(json!({}), &json!({}), json!({})).is_err());
        assert!(Remap::compile(".event = (").is_err());
    }
}
