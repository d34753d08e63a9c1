//! A VRL program (Vector Remap Language, the `vrl` crate) compiled once and run on JSON.
//! Only the language itself is built in (paths, assignments, comparisons, boolean
//! logic, `if`, `??`), not VRL's function library: the library brings a C regex engine
//! and hundreds of crates, and what conditions and webhook mappings do needs none of it.

use std::sync::Arc;

use serde_json::Value as Json;
use vrl::compiler::state::RuntimeState;
use vrl::compiler::{Context, TargetValue, TimeZone, compile};
use vrl::diagnostic::Formatter;
use vrl::value::{Secrets, Value};

/// A compiled program, shared by every actor that runs it.
#[derive(Clone)]
pub struct Program {
    source: Arc<str>,
    compiled: Arc<vrl::compiler::Program>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Program").field(&self.source).finish()
    }
}

/// What a run left: the program's value and the target as the program changed it.
#[derive(Debug)]
pub struct Run {
    pub result: Value,
    pub target: Value,
}

impl Program {
    /// Compiles `source`; the error, headed by `label`, shows where in it the problem is.
    pub fn compile(label: &str, source: &str) -> Result<Self, String> {
        let compiled =
            compile(source, &[]).map_err(|diagnostics| format!("{label}:\n{}", Formatter::new(source, diagnostics)))?;
        Ok(Program {
            source: Arc::from(source),
            compiled: Arc::new(compiled.program),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the program with `input` as its target (`.`).
    pub fn run(&self, input: Json) -> Result<Run, String> {
        let mut target = TargetValue {
            value: Value::from(input),
            metadata: Value::Object(Default::default()),
            secrets: Secrets::default(),
        };
        let mut state = RuntimeState::default();
        let timezone = TimeZone::default();
        let mut context = Context::new(&mut target, &mut state, &timezone);
        let result = self.compiled.resolve(&mut context).map_err(|error| error.to_string())?;
        Ok(Run {
            result,
            target: target.value,
        })
    }
}
