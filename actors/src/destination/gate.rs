//! Whether an event is for this destination at all, as the sender said: Segment's
//! `integrations` object and Consent Management's `context.consent.categoryPreferences`.
//!
//! Segment's semantics: a destination is skipped when the event names it with `false`,
//! or when `All` is `false` and it is not named with a true value (an object, such as
//! per-integration options, counts as true). Names match case-insensitively. A skipped
//! event is finished for this destination (counted as filtered with its reason); the
//! archive and every other destination still get it.

use switchyard_schemas::Event;
use switchyard_schemas::event::Object;

use super::config::DestinationConfig;

/// Why a destination was not sent an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The event's `integrations` object turned this destination off.
    Integrations,
    /// The event's consent preferences don't grant every category the destination needs.
    Consent,
}

/// One destination's routing rules, prepared once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// The name events use for this destination, lower-cased.
    name: String,
    honor_integrations: bool,
    consent_categories: Vec<String>,
    require_consent: bool,
}

impl Gate {
    pub fn new(config: &DestinationConfig) -> Self {
        Gate {
            name: config.integration_name().to_lowercase(),
            honor_integrations: config.honor_integrations,
            consent_categories: config.consent_categories.clone(),
            require_consent: config.require_consent,
        }
    }

    /// Whether this gate lets everything through (nothing to look at per event).
    pub fn is_open(&self) -> bool {
        !self.honor_integrations && self.consent_categories.is_empty() && !self.require_consent
    }

    /// `Some(reason)` when the event must not go to this destination.
    pub fn check(&self, event: &Event) -> Option<Skip> {
        let common = event.common();
        if self.honor_integrations
            && let Some(integrations) = &common.integrations
            && !enabled(integrations, &self.name)
        {
            return Some(Skip::Integrations);
        }
        if (!self.consent_categories.is_empty() || self.require_consent)
            && !consented(common.context.as_ref(), &self.consent_categories, self.require_consent)
        {
            return Some(Skip::Consent);
        }
        None
    }
}

/// Segment's rule for one destination's entry in an `integrations` object.
pub fn enabled(integrations: &Object, name: &str) -> bool {
    let entry = |wanted: &str| {
        integrations
            .iter()
            .find(|(key, value)| key.eq_ignore_ascii_case(wanted) && !value.is_null())
            .map(|(_, value)| value)
    };
    match entry(name) {
        Some(value) => value.as_bool() != Some(false),
        None => entry("All").and_then(|all| all.as_bool()) != Some(false),
    }
}

/// Every category the destination needs is `true` in the event's preferences; an event
/// with no preferences passes unless consent is required.
fn consented(context: Option<&Object>, categories: &[String], require_consent: bool) -> bool {
    let preferences = context
        .and_then(|context| context.get("consent"))
        .and_then(|consent| consent.get("categoryPreferences"))
        .and_then(|preferences| preferences.as_object());
    match preferences {
        None => !require_consent,
        Some(preferences) => categories
            .iter()
            .all(|category| preferences.get(category).and_then(|value| value.as_bool()) == Some(true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn object(value: Value) -> Object {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_integrations_object_follows_segments_rules() {
        let on = |integrations: Value, name: &str| enabled(&object(integrations), name);
        assert!(on(json!({}), "mixpanel"), "an empty object sends everywhere");
        assert!(!on(json!({"Mixpanel": false}), "mixpanel"), "named false");
        assert!(
            on(json!({"Google Analytics": false}), "mixpanel"),
            "another named false"
        );
        assert!(!on(json!({"All": false}), "mixpanel"), "All false and not named");
        assert!(
            on(json!({"All": false, "MIXPANEL": true}), "mixpanel"),
            "named true, any case"
        );
        assert!(
            on(json!({"All": false, "Mixpanel": {"apiKey": "x"}}), "mixpanel"),
            "an object counts as true"
        );
        assert!(!on(json!({"All": true, "Mixpanel": false}), "mixpanel"));
        assert!(
            !on(json!({"all": false, "Mixpanel": null}), "mixpanel"),
            "null is not named"
        );
    }

    #[test]
    fn consent_needs_every_category_the_destination_lists() {
        let categories = vec!["analytics".to_string(), "advertising".to_string()];
        let context = |preferences: Value| object(json!({"consent": {"categoryPreferences": preferences}}));
        let both = context(json!({"analytics": true, "advertising": true, "other": false}));
        assert!(consented(Some(&both), &categories, false));
        let one = context(json!({"analytics": true, "advertising": false}));
        assert!(!consented(Some(&one), &categories, false));
        let missing = context(json!({"analytics": true}));
        assert!(
            !consented(Some(&missing), &categories, false),
            "a missing category is not consent"
        );
        assert!(consented(None, &categories, false), "no consent object: sent");
        assert!(!consented(None, &categories, true), "unless consent is required");
        let no_preferences = object(json!({"ip": "1.2.3.4"}));
        assert!(!consented(Some(&no_preferences), &[], true));
        assert!(consented(Some(&context(json!({}))), &[], true), "preferences given");
    }
}
