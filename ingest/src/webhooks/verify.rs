//! Signature checks, one per provider preset, all HMAC compared in constant time.
//! A refusal names what was wrong (missing header, malformed, expired, mismatch) but
//! never the expected value.

use actix_web::http::header::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use switchyard_config::{WebhookPreset, WebhookSourceConfig};

/// A checked signature: what replay protection remembers, for presets that sign a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Stripe: the signed timestamp and the MAC that matched, as decoded bytes, so a
    /// replay can't pass as new by spelling the same signature in other hex case.
    Timed {
        timestamp: i64,
        signature: Vec<u8>,
    },
    Plain,
    /// The source doesn't require a signature and none was sent.
    Unsigned,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim)
}

fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Hex (either case) of the expected MAC, compared in constant time.
fn matches_hex<M: Mac>(mac: M, hex_signature: &str) -> bool {
    hex::decode(hex_signature).is_ok_and(|bytes| mac.verify_slice(&bytes).is_ok())
}

/// Checks the request's signature; `now` in Unix seconds.
pub fn verify(config: &WebhookSourceConfig, headers: &HeaderMap, body: &[u8], now: i64) -> Result<Verified, String> {
    let secret = config.secret.as_deref().unwrap_or_default().as_bytes();
    let missing = |name: &str| format!("the {name} header is missing: requests to this source must be signed");
    match config.preset {
        WebhookPreset::Stripe => {
            let value = header(headers, "stripe-signature").ok_or_else(|| missing("Stripe-Signature"))?;
            let mut timestamp = None;
            let mut signatures = Vec::new();
            for item in value.split(',') {
                match item.trim().split_once('=') {
                    Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
                    Some(("v1", signature)) => signatures.push(signature),
                    _ => {}
                }
            }
            let timestamp = timestamp.ok_or("Stripe-Signature has no valid t= timestamp")?;
            if signatures.is_empty() {
                return Err("Stripe-Signature has no v1= signature".into());
            }
            let age = now - timestamp;
            if age > config.tolerance_secs as i64 || age < -(config.tolerance_secs as i64) {
                return Err(format!(
                    "the signed timestamp is {age} s from now, outside the {} s tolerance (a replay, or a clock off)",
                    config.tolerance_secs
                ));
            }
            let signed_prefix = format!("{timestamp}.");
            let mac = hmac_sha256(secret, &[signed_prefix.as_bytes(), body]);
            signatures
                .into_iter()
                .find(|signature| matches_hex(mac.clone(), signature))
                .map(|_| Verified::Timed {
                    timestamp,
                    signature: mac.finalize().into_bytes().to_vec(),
                })
                .ok_or_else(|| "no Stripe-Signature v1 signature matches the body and the secret".into())
        }
        WebhookPreset::Github => {
            let value = header(headers, "x-hub-signature-256").ok_or_else(|| missing("X-Hub-Signature-256"))?;
            let hex_signature = value
                .strip_prefix("sha256=")
                .ok_or("X-Hub-Signature-256 must start with sha256=")?;
            if matches_hex(hmac_sha256(secret, &[body]), hex_signature) {
                Ok(Verified::Plain)
            } else {
                Err("X-Hub-Signature-256 does not match the body and the secret".into())
            }
        }
        WebhookPreset::Shopify => {
            let value = header(headers, "x-shopify-hmac-sha256").ok_or_else(|| missing("X-Shopify-Hmac-Sha256"))?;
            let signature = STANDARD
                .decode(value)
                .map_err(|_| "X-Shopify-Hmac-Sha256 is not base64".to_string())?;
            if hmac_sha256(secret, &[body]).verify_slice(&signature).is_ok() {
                Ok(Verified::Plain)
            } else {
                Err("X-Shopify-Hmac-Sha256 does not match the body and the secret".into())
            }
        }
        WebhookPreset::Intercom => {
            let value = header(headers, "x-hub-signature").ok_or_else(|| missing("X-Hub-Signature"))?;
            let hex_signature = value
                .strip_prefix("sha1=")
                .ok_or("X-Hub-Signature must start with sha1=")?;
            let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes keys of any length");
            mac.update(body);
            if matches_hex(mac, hex_signature) {
                Ok(Verified::Plain)
            } else {
                Err("X-Hub-Signature does not match the body and the secret".into())
            }
        }
        WebhookPreset::Generic => {
            let name = config.signature_header.as_str();
            let Some(value) = header(headers, name) else {
                return if config.require_signature {
                    Err(missing(name))
                } else {
                    Ok(Verified::Unsigned)
                };
            };
            let hex_signature = value.strip_prefix("sha256=").unwrap_or(value);
            if matches_hex(hmac_sha256(secret, &[body]), hex_signature) {
                Ok(Verified::Plain)
            } else {
                Err(format!("{name} does not match the body and the secret"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn config(preset: WebhookPreset) -> WebhookSourceConfig {
        serde_json::from_value(serde_json::json!({"preset": preset, "secret": "whsec_test_secret"})).expect("config")
    }

    fn headers(pairs: &[(&str, String)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn hex_mac(parts: &[&[u8]]) -> String {
        hex::encode(hmac_sha256(b"whsec_test_secret", parts).finalize().into_bytes())
    }

    #[test]
    fn stripe_signatures_are_checked_with_their_timestamp() {
        let body = br#"{"id":"evt_1"}"#;
        let signed = hex_mac(&[b"1700000000.", body]);
        let good = headers(&[("stripe-signature", format!("t=1700000000,v1=deadbeef,v1={signed}"))]);
        let stripe = config(WebhookPreset::Stripe);
        assert!(matches!(
            verify(&stripe, &good, body, 1_700_000_100),
            Ok(Verified::Timed {
                timestamp: 1_700_000_000,
                ..
            })
        ));
        let late = verify(&stripe, &good, body, 1_700_000_000 + 301).expect_err("expired");
        assert!(late.contains("tolerance"), "{late}");
        let tampered = verify(&stripe, &good, br#"{"id":"evt_2"}"#, 1_700_000_100).expect_err("tampered");
        assert!(
            tampered.contains("no Stripe-Signature v1 signature matches"),
            "{tampered}"
        );
        let none = verify(&stripe, &HeaderMap::new(), body, 1_700_000_100).expect_err("unsigned");
        assert!(none.contains("Stripe-Signature header is missing"), "{none}");
    }

    #[test]
    fn github_shopify_intercom_and_generic_signatures() {
        let body = br#"{"action":"opened"}"#;
        let hex_signature = hex_mac(&[body]);
        let github = headers(&[("x-hub-signature-256", format!("sha256={hex_signature}"))]);
        assert_eq!(
            verify(&config(WebhookPreset::Github), &github, body, 0),
            Ok(Verified::Plain)
        );
        assert!(verify(&config(WebhookPreset::Github), &github, b"{}", 0).is_err());

        let raw = hmac_sha256(b"whsec_test_secret", &[body]).finalize().into_bytes();
        let shopify = headers(&[("x-shopify-hmac-sha256", STANDARD.encode(raw))]);
        assert_eq!(
            verify(&config(WebhookPreset::Shopify), &shopify, body, 0),
            Ok(Verified::Plain)
        );

        let mut sha1 = Hmac::<Sha1>::new_from_slice(b"whsec_test_secret").expect("key");
        sha1.update(body);
        let intercom = headers(&[(
            "x-hub-signature",
            format!("sha1={}", hex::encode(sha1.finalize().into_bytes())),
        )]);
        assert_eq!(
            verify(&config(WebhookPreset::Intercom), &intercom, body, 0),
            Ok(Verified::Plain)
        );
        assert!(
            verify(&config(WebhookPreset::Intercom), &github, body, 0).is_err(),
            "another provider's header"
        );

        let generic = headers(&[("x-signature", hex_signature)]);
        assert_eq!(
            verify(&config(WebhookPreset::Generic), &generic, body, 0),
            Ok(Verified::Plain)
        );
        let mut unsigned = config(WebhookPreset::Generic);
        unsigned.require_signature = false;
        assert_eq!(verify(&unsigned, &HeaderMap::new(), body, 0), Ok(Verified::Unsigned));
        assert!(verify(&config(WebhookPreset::Generic), &HeaderMap::new(), body, 0).is_err());
    }
}
