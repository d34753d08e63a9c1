//! A hash transform's salt is a credential: whoever knows it can hash guesses (emails,
//! phone numbers) and match them against what destinations received. It is stored sealed
//! under the master key, bound to its source or destination, and serialized as
//! `<redacted>` wherever a view leaves the process (API responses, the audit log, an
//! exported workspace file). In memory, views hold it opened, for the router and for
//! `apply` to compare.
//!
//! A salt given back as `<redacted>` (a view sent back unchanged) keeps the stored salt
//! of the hash step at the same position; there being none is a 400.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serializer;
use serde_json::Value;

use crate::ControlError;
use crate::model::REDACTED;
use crate::secrets::Sealer;

/// How a sealed salt starts in the stored JSON (a stored one without it predates sealing).
const SEALED: &str = "sealed:";

fn bound_to(owner: &str) -> String {
    format!("transform salt:{owner}")
}

/// The salt of a hash step, if `step` is one.
fn salt_mut(step: &mut Value) -> Option<&mut Value> {
    let object = step.as_object_mut()?;
    if object.get("op").and_then(Value::as_str) != Some("hash") {
        return None;
    }
    object.get_mut("salt").filter(|salt| salt.is_string())
}

fn salt(step: &Value) -> Option<&str> {
    let object = step.as_object()?;
    (object.get("op").and_then(Value::as_str) == Some("hash"))
        .then(|| object.get("salt").and_then(Value::as_str))
        .flatten()
}

/// `given` with each `<redacted>` salt replaced by the opened salt at its position in
/// `stored`.
pub(crate) fn fill(given: &[Value], stored: &[Value]) -> Result<Vec<Value>, ControlError> {
    let mut filled = given.to_vec();
    for (index, step) in filled.iter_mut().enumerate() {
        let Some(salt) = salt_mut(step) else { continue };
        if salt.as_str() == Some(REDACTED) {
            let kept = stored.get(index).and_then(self::salt).ok_or_else(|| {
                ControlError::invalid(
                    &format!("transforms[{index}].salt"),
                    "is <redacted> but no hash step was stored here: give the salt itself",
                )
            })?;
            *salt = Value::from(kept);
        } else if salt.as_str().is_some_and(|text| text.starts_with(SEALED)) {
            return Err(ControlError::invalid(
                &format!("transforms[{index}].salt"),
                format!("may not start with {SEALED:?}"),
            ));
        }
    }
    Ok(filled)
}

/// The chain as stored: each salt sealed to `owner` (`source:<id>`, `destination:<id>`).
pub(crate) fn seal(sealer: &Sealer, owner: &str, plain: &[Value]) -> Result<Vec<Value>, ControlError> {
    let mut sealed = plain.to_vec();
    for step in &mut sealed {
        if let Some(salt) = salt_mut(step) {
            let text = salt.as_str().unwrap_or_default();
            let ciphertext = sealer.seal(text.as_bytes(), &bound_to(owner))?;
            *salt = Value::from(format!("{SEALED}{}", STANDARD.encode(ciphertext)));
        }
    }
    Ok(sealed)
}

/// The chain as stored, salts opened.
pub(crate) fn open(sealer: &Sealer, owner: &str, stored: &[Value]) -> Result<Vec<Value>, ControlError> {
    let mut plain = stored.to_vec();
    for step in &mut plain {
        let Some(salt) = salt_mut(step) else { continue };
        let Some(encoded) = salt.as_str().and_then(|text| text.strip_prefix(SEALED)) else {
            continue;
        };
        let ciphertext = STANDARD
            .decode(encoded)
            .map_err(|e| ControlError::Corrupt(format!("{owner} transform salt: {e}")))?;
        let opened = sealer.open(&ciphertext, &bound_to(owner))?;
        let text =
            String::from_utf8(opened).map_err(|e| ControlError::Corrupt(format!("{owner} transform salt: {e}")))?;
        *salt = Value::from(text);
    }
    Ok(plain)
}

/// The chain with every salt `<redacted>`.
pub(crate) fn redacted(transforms: &[Value]) -> Vec<Value> {
    let mut shown = transforms.to_vec();
    for step in &mut shown {
        if let Some(salt) = salt_mut(step) {
            *salt = Value::from(REDACTED);
        }
    }
    shown
}

/// Serializes a view's transforms with their salts `<redacted>`.
pub(crate) fn serialize_redacted<S: Serializer>(transforms: &[Value], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(redacted(transforms))
}

/// Whether `given` (perhaps with `<redacted>` salts) asks for no change to `current`.
pub fn unchanged(current: &[Value], given: &[Value]) -> bool {
    fill(given, current).is_ok_and(|filled| filled == current)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sealer() -> Sealer {
        Sealer::from_master(&age::x25519::Identity::generate())
    }

    #[test]
    fn salts_are_sealed_to_their_owner_redacted_when_shown_and_kept_when_sent_back_redacted() {
        let sealer = sealer();
        let plain = vec![
            json!({"op": "hash", "fields": ["userId"], "salt": "pepper-123"}),
            json!({"op": "redact", "fields": ["traits.email"]}),
        ];
        let stored = seal(&sealer, "source:shop", &plain).expect("sealed");
        let text = serde_json::to_string(&stored).expect("json");
        assert!(!text.contains("pepper-123"), "{text}");
        assert_eq!(open(&sealer, "source:shop", &stored).expect("opened"), plain);
        // Sealed to one owner, the salt can't be moved to another.
        assert!(open(&sealer, "source:other", &stored).is_err());

        let shown = redacted(&plain);
        assert_eq!(shown[0]["salt"], REDACTED);
        assert_eq!(fill(&shown, &plain).expect("filled"), plain);
        assert!(unchanged(&plain, &shown));
        let mut changed = plain.clone();
        changed[0]["salt"] = json!("another-salt");
        assert!(!unchanged(&plain, &changed));

        let error = fill(&shown, &[]).expect_err("nothing stored to keep");
        assert!(error.to_string().contains("transforms[0].salt"), "{error}");
        let planted = vec![json!({"op": "hash", "fields": ["userId"], "salt": "sealed:AAAA"})];
        assert!(fill(&planted, &[]).is_err());
    }
}
