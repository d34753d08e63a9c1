//! TLS to a webhook destination, as its owner specifies: the CAs to trust, a client
//! certificate for mutual TLS and the lowest protocol version. rustls with the ring
//! provider (the one the whole workspace uses; no process-wide default is assumed), so
//! nothing older than TLS 1.2 can be negotiated whatever the setting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationTls {
    /// PEM certificates of the CAs that may vouch for the destination. When set they
    /// replace the public (Mozilla) roots for this destination: a host meant to be
    /// vouched for by a private CA can't be impersonated with a public certificate.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// PEM certificate chain presented to the destination (mutual TLS).
    #[serde(default)]
    pub client_cert_pem: Option<String>,
    /// PEM private key of `client_cert_pem` (PKCS#8, PKCS#1 or SEC1). Keep it in the
    /// destination's sealed credentials when it comes through the admin API.
    #[serde(default)]
    pub client_key_pem: Option<String>,
    #[serde(default)]
    pub min_version: TlsVersion,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

impl std::fmt::Debug for DestinationTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationTls")
            .field("custom_ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client_cert_pem.is_some())
            .field("min_version", &self.min_version)
            .finish_non_exhaustive()
    }
}

/// A setting that does not make a TLS client; `field` is the key under `tls`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tls.{field}: {reason}")]
pub struct TlsSettingsError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl ToString) -> TlsSettingsError {
    TlsSettingsError {
        field,
        reason: reason.to_string(),
    }
}

/// The client configuration for these settings. Built once per distinct settings and
/// shared by every actor of the destination (one per source), so ten thousand actors
/// don't each parse the same PEM.
pub fn client_config(tls: &DestinationTls) -> Result<Arc<ClientConfig>, TlsSettingsError> {
    static CACHE: OnceLock<Mutex<HashMap<[u8; 32], Arc<ClientConfig>>>> = OnceLock::new();
    let key = cache_key(tls);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(config) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(config.clone());
    }
    let config = Arc::new(build(tls)?);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, config.clone());
    Ok(config)
}

fn cache_key(tls: &DestinationTls) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [&tls.ca_pem, &tls.client_cert_pem, &tls.client_key_pem] {
        // Length-prefixed so that moving text between fields changes the key.
        let text = part.as_deref().unwrap_or("");
        hash.update((part.is_some() as u64).to_le_bytes());
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
    }
    hash.update([tls.min_version as u8]);
    hash.finalize().into()
}

fn build(tls: &DestinationTls) -> Result<ClientConfig, TlsSettingsError> {
    let versions: &[&SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let roots = match &tls.ca_pem {
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates("ca_pem", pem)? {
                roots.add(certificate).map_err(|e| bad("ca_pem", e))?;
            }
            roots
        }
    };
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .map_err(|e| bad("min_version", e))?
        .with_root_certificates(roots);
    match (&tls.client_cert_pem, &tls.client_key_pem) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = certificates("client_cert_pem", cert)?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| bad("client_key_pem", format!("not a PEM private key ({e})")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("client_key_pem", format!("does not match client_cert_pem ({e})")))
        }
        (Some(_), None) => Err(bad("client_key_pem", "required with client_cert_pem")),
        (None, Some(_)) => Err(bad("client_cert_pem", "required with client_key_pem")),
    }
}

fn certificates(field: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsSettingsError> {
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(field, format!("not PEM certificates ({e})")))?;
    if certificates.is_empty() {
        return Err(bad(field, "no PEM certificate found"));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_trust_the_public_roots_and_build_once() {
        let first = client_config(&DestinationTls::default()).expect("default config");
        let second = client_config(&DestinationTls::default()).expect("default config");
        assert!(
            Arc::ptr_eq(&first, &second),
            "the same settings share one configuration"
        );
    }

    #[test]
    fn bad_settings_name_their_field() {
        let garbage = DestinationTls {
            ca_pem: Some("not a certificate".into()),
            ..Default::default()
        };
        assert_eq!(client_config(&garbage).expect_err("no certificate").field, "ca_pem");
        let half = DestinationTls {
            client_cert_pem: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(client_config(&half).expect_err("no key").field, "client_key_pem");
    }

    #[test]
    fn min_version_reads_as_text_and_refuses_older_versions() {
        let tls: DestinationTls = serde_json::from_str(r#"{"min_version": "1.3"}"#).expect("1.3");
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        let error = serde_json::from_str::<DestinationTls>(r#"{"min_version": "1.0"}"#).expect_err("1.0");
        assert!(error.to_string().contains("1.2"), "{error}");
    }

    #[test]
    fn debug_output_hides_the_key() {
        let tls = DestinationTls {
            client_key_pem: Some("-----BEGIN PRIVATE KEY----- secret".into()),
            ..Default::default()
        };
        assert!(!format!("{tls:?}").contains("secret"));
    }
}
