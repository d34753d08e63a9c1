//! Conditions in VRL (Vector Remap Language, the `vrl` crate): `.event == "Heartbeat"`,
//! `.properties.plan != "free" && .context.locale == "fr-FR"`. Only the language itself is
//! built in (paths, comparisons, boolean logic, `??`), not VRL's function library: the
//! library brings a C regex engine and hundreds of crates, and conditions on event
//! fields need none of it.

use std::sync::Arc;

use serde_json::Value as Json;
use vrl::compiler::state::RuntimeState;
use vrl::compiler::{Context, Program, TargetValue, TimeZone, compile};
use vrl::diagnostic::Formatter;
use vrl::value::{Secrets, Value};

/// A compiled condition.
#[derive(Clone)]
pub struct Condition {
    source: Arc<str>,
    program: Arc<Program>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

impl Condition {
    /// Compiles `source`; the error shows where in it the problem is.
    pub fn compile(source: &str) -> Result<Self, String> {
        let compiled = compile(source, &[])
            .map_err(|diagnostics| format!("condition {source:?}:\n{}", Formatter::new(source, diagnostics)))?;
        Ok(Condition {
            source: Arc::from(source),
            program: Arc::new(compiled.program),
        })
    }

    /// Whether the condition is true for this event. Anything but `true` is false; a
    /// runtime error is an error, so the event goes to the dead-letter topic.
    pub fn matches(&self, event: &Json) -> Result<bool, String> {
        let mut target = TargetValue {
            value: Value::from(event.clone()),
            metadata: Value::Object(Default::default()),
            secrets: Secrets::default(),
        };
        let mut state = RuntimeState::default();
        let timezone = TimeZone::default();
        let mut context = Context::new(&mut target, &mut state, &timezone);
        match self.program.resolve(&mut context) {
            Ok(Value::Boolean(result)) => Ok(result),
            Ok(_) => Ok(false),
            Err(error) => Err(format!("condition {:?}: {error}", self.source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn evaluates_paths_comparisons_and_logic() {
        let condition = Condition::compile(r#".event == "Heartbeat" || .properties.plan == "free""#).expect("compiles");
        assert!(condition.matches(&json!({"event": "Heartbeat"})).expect("runs"));
        assert!(
            condition
                .matches(&json!({"event": "Signup", "properties": {"plan": "free"}}))
                .expect("runs")
        );
        assert!(
            !condition
                .matches(&json!({"event": "Signup", "properties": {"plan": "pro"}}))
                .expect("runs")
        );
    }

    #[test]
    fn a_bad_condition_is_refused_with_its_position() {
        let error = Condition::compile(r#".event == "Heartbeat" &&"#).expect_err("incomplete");
        assert!(error.contains("condition") && error.contains("┌─ :1:"), "{error}");
    }
}
