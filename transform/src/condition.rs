//! Conditions in VRL (see `program.rs`): `.event == "Heartbeat"`,
//! `.properties.plan != "free" && .context.locale == "fr-FR"`.

use serde_json::Value as Json;
use vrl::value::Value;

use crate::program::Program;

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Condition {
    program: Program,
}

impl Condition {
    /// Compiles `source`; the error shows where in it the problem is.
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = Program::compile(&format!("condition {source:?}"), source)?;
        Ok(Condition { program })
    }

    /// Whether the condition is true for this event. Anything but `true` is false; a
    /// runtime error is an error, so the event goes to the dead-letter topic.
    pub fn matches(&self, event: &Json) -> Result<bool, String> {
        match self.program.run(event.clone()) {
            Ok(run) => Ok(matches!(run.result, Value::Boolean(true))),
            Err(error) => Err(format!("condition {:?}: {error}", self.program.source())),
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
