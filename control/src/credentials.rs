//! Which of a destination's settings are secrets. A secret given through the admin API
//! or `apply` must be in `credentials` (sealed, shown as `<redacted>` to every viewer
//! and in the audit log), and `credentials` hold only the secrets the kind declares, so
//! nothing non-secret hides there and nothing secret sits in plain settings.

use serde_json::{Map, Value};
use switchyard_config::KAFKA_SECRET_OPTIONS;

use crate::ControlError;

/// A credential key, and the keys of it that are secret when it is a table (`None`:
/// the whole value is secret).
type Declared = (&'static str, Option<&'static [&'static str]>);

fn declared(kind: &str) -> &'static [Declared] {
    match kind {
        "webhook" => &[
            ("signing_secret", None),
            ("bearer_token", None),
            ("basic_auth", None),
            // Header values are how many receivers authenticate (`X-Api-Key`).
            ("headers", None),
            ("tls", Some(&["client_key_pem"])),
        ],
        "kafka" => &[("options", Some(KAFKA_SECRET_OPTIONS))],
        "postgres_warehouse" => &[("password", None)],
        "segment" => &[("write_key", None)],
        "amplitude" => &[("api_key", None)],
        "mixpanel" => &[
            ("project_token", None),
            ("service_account_username", None),
            ("service_account_secret", None),
        ],
        "object_storage_export" => &[
            ("access_key_id", None),
            ("secret_access_key", None),
            ("session_token", None),
        ],
        _ => &[],
    }
}

/// The secret settings of `kind` as dotted paths: `write_key`, `tls.client_key_pem`.
pub(crate) fn secret_paths(kind: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (key, inner) in declared(kind) {
        match inner {
            None => paths.push(key.to_string()),
            Some(inner) => paths.extend(inner.iter().map(|name| format!("{key}.{name}"))),
        }
    }
    paths
}

/// Refuses a secret in `settings` and anything undeclared in `credentials`, naming it.
pub(crate) fn check_placement(
    kind: &str,
    settings: &Map<String, Value>,
    credentials: &Map<String, Value>,
) -> Result<(), ControlError> {
    let declared = declared(kind);
    for (key, value) in credentials {
        let field = format!("credentials.{key}");
        match declared.iter().find(|(name, _)| name == key) {
            None => {
                return Err(ControlError::invalid(
                    &field,
                    format!("is not a credential of a {kind} destination"),
                ));
            }
            Some((_, Some(inner))) => {
                let Value::Object(table) = value else {
                    return Err(ControlError::invalid(&field, "must be a table"));
                };
                if let Some(extra) = table.keys().find(|k| !inner.contains(&k.as_str())) {
                    return Err(ControlError::invalid(
                        &format!("{field}.{extra}"),
                        "is not a secret: set it in settings",
                    ));
                }
            }
            Some((_, None)) => {}
        }
    }
    for (key, inner) in declared {
        let Some(value) = settings.get(*key) else { continue };
        let secret = match (inner, value) {
            (None, _) => Some(key.to_string()),
            (Some(inner), Value::Object(table)) => table
                .keys()
                .find(|k| inner.contains(&k.as_str()))
                .map(|k| format!("{key}.{k}")),
            (Some(_), _) => None,
        };
        if let Some(secret) = secret {
            return Err(ControlError::invalid(
                &format!("settings.{secret}"),
                "is a secret: give it in credentials, where it is sealed and never shown",
            ));
        }
    }
    // A webhook URL's user info is its credential (a bare user name is often a token);
    // a warehouse URL names its database user, and only the password is secret.
    if let Some(Value::String(url)) = settings.get("url")
        && let Ok(parsed) = url::Url::parse(url)
        && (parsed.password().is_some() || (kind == "webhook" && !parsed.username().is_empty()))
    {
        return Err(ControlError::invalid(
            "settings.url",
            "carries a password or token: give it in credentials (basic_auth, or password for a warehouse)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(kind: &str, settings: Value, credentials: Value) -> Result<(), String> {
        let (Value::Object(settings), Value::Object(credentials)) = (settings, credentials) else {
            return Err("tables".into());
        };
        check_placement(kind, &settings, &credentials).map_err(|e| e.to_string())
    }

    #[test]
    fn secrets_belong_in_credentials() {
        assert!(check("webhook", json!({"url": "https://h/x"}), json!({"bearer_token": "t"})).is_ok());
        let error = check(
            "webhook",
            json!({"url": "https://h/x", "headers": {"x-api-key": "k"}}),
            json!({}),
        );
        assert!(error.expect_err("header in settings").contains("settings.headers"));
        let error = check("webhook", json!({"url": "https://user:pw@h/x"}), json!({}));
        assert!(error.expect_err("userinfo").contains("settings.url"));
        let error = check(
            "kafka",
            json!({"brokers": "h:9092", "options": {"sasl.password": "p"}}),
            json!({}),
        );
        assert!(error.expect_err("sasl").contains("settings.options.sasl.password"));
        assert!(
            check(
                "kafka",
                json!({"brokers": "h:9092", "options": {"sasl.mechanism": "PLAIN"}}),
                json!({"options": {"sasl.username": "u", "sasl.password": "p"}})
            )
            .is_ok()
        );
        assert!(
            check(
                "postgres_warehouse",
                json!({"url": "postgres://loader@h/db"}),
                json!({})
            )
            .is_ok()
        );
        let error = check("postgres_warehouse", json!({"url": "postgres://u:pw@h/db"}), json!({}));
        assert!(error.expect_err("password in url").contains("settings.url"));
        assert!(
            check(
                "segment",
                json!({"endpoint": "https://api.segment.io"}),
                json!({"write_key": "wk"})
            )
            .is_ok()
        );
        let error = check("segment", json!({"write_key": "wk"}), json!({}));
        assert!(error.expect_err("write key in settings").contains("settings.write_key"));
        let error = check("segment", json!({}), json!({"endpoint": "https://elsewhere/"}));
        assert!(
            error
                .expect_err("endpoint is no credential")
                .contains("credentials.endpoint")
        );
    }

    #[test]
    fn credentials_hold_only_declared_secrets() {
        let error = check("webhook", json!({}), json!({"url": "https://elsewhere/"}));
        assert!(error.expect_err("url is no credential").contains("credentials.url"));
        let error = check(
            "kafka",
            json!({}),
            json!({"options": {"bootstrap.servers": "10.0.0.1:9092"}}),
        );
        assert!(
            error
                .expect_err("not a secret")
                .contains("credentials.options.bootstrap.servers")
        );
        let error = check("blackhole", json!({}), json!({"anything": 1}));
        assert!(error.is_err());
    }
}
