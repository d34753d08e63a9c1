//! `[kafka]`: the cluster every process reads and writes (the ingest, retry and
//! dead-letter topics), and how it is reached: plain TCP, TLS (`ssl`), SASL over TLS
//! (`sasl_ssl`, as Confluent Cloud, MSK, Aiven and Redpanda Cloud ask) or, only when
//! the operator says so, SASL in clear. Certificates, keys and passwords come from files
//! (a mounted Kubernetes Secret) or environment variables, never from the file itself,
//! and are never printed: `Debug` shows option names only.
//!
//! The typed settings become librdkafka properties in [`KafkaConfig::resolve`]; the
//! operator's raw `options` are applied after them, so an option can still override.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// The Kafka cluster and ingest topic.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port` list, as librdkafka's `bootstrap.servers`.
    pub brokers: String,
    #[serde(default = "default_topic")]
    pub topic: String,
    /// How long a produce may wait for the broker before the request is answered 503.
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// TLS settings (with `ssl` or `sasl_ssl`); absent: the system's CA roots.
    #[serde(default)]
    pub tls: Option<KafkaTls>,
    /// SASL credentials (with `sasl_ssl`, or `sasl_plaintext` when allowed).
    #[serde(default)]
    pub sasl: Option<KafkaSasl>,
    /// `sasl_plaintext` sends the password in clear: refused unless this is `true`.
    #[serde(default)]
    pub allow_plaintext_sasl: bool,
    /// Extra librdkafka properties, applied last.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// Options may hold passwords (after [`KafkaConfig::resolve`] they do): names only.
impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("security_protocol", &self.security_protocol)
            .field("tls", &self.tls)
            .field("sasl", &self.sasl.as_ref().map(|sasl| sasl.mechanism))
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    #[serde(alias = "PLAINTEXT")]
    Plaintext,
    #[serde(alias = "SSL")]
    Ssl,
    #[serde(alias = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(alias = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    fn property(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// `[kafka.tls]`. Each PEM comes from a file or from an environment variable, not both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTls {
    /// CA certificates (PEM) that may vouch for the brokers, replacing the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_env: Option<String>,
    /// Client certificate chain (PEM), for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_env: Option<String>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub key_env: Option<String>,
    /// The key's passphrase, when it is encrypted.
    #[serde(default)]
    pub key_password_file: Option<PathBuf>,
    #[serde(default)]
    pub key_password_env: Option<String>,
    /// `false` skips checking that a broker's certificate names its host (for brokers
    /// reached by an address their certificates don't carry). Trust is still checked.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn property(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `[kafka.sasl]`. The username may be written in the file; the password comes from a
/// file or an environment variable. Without either, `SWITCHYARD_KAFKA_SASL_USERNAME` and
/// `SWITCHYARD_KAFKA_SASL_PASSWORD` are read.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
}

impl std::fmt::Debug for KafkaSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A `[kafka]` setting that can't be used; `field` is its dotted name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kafka.{field}: {reason}")]
pub struct KafkaSettingsError {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> KafkaSettingsError {
    KafkaSettingsError {
        field,
        reason: reason.into(),
    }
}

fn default_topic() -> String {
    "switchyard.ingest".into()
}

fn default_delivery_timeout_ms() -> u64 {
    10_000
}

fn default_true() -> bool {
    true
}

/// The environment variables read for SASL credentials when `[kafka.sasl]` names none.
pub const SASL_USERNAME_ENV: &str = "SWITCHYARD_KAFKA_SASL_USERNAME";
pub const SASL_PASSWORD_ENV: &str = "SWITCHYARD_KAFKA_SASL_PASSWORD";

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            topic: default_topic(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            security_protocol: SecurityProtocol::default(),
            tls: None,
            sasl: None,
            allow_plaintext_sasl: false,
            options: BTreeMap::new(),
        }
    }

    /// The protocol in effect: an operator's raw `security.protocol` option wins.
    fn effective_protocol(&self) -> Option<String> {
        self.options
            .get("security.protocol")
            .map(|value| value.to_ascii_lowercase())
            .or_else(|| Some(self.security_protocol.property().to_string()))
    }

    /// Whether connecting needs a check at start: TLS or SASL is in use.
    pub fn is_secured(&self) -> bool {
        self.effective_protocol()
            .is_some_and(|protocol| protocol != "plaintext")
    }

    /// Checks the settings without reading any file.
    pub fn validate(&self) -> Result<(), KafkaSettingsError> {
        if self.brokers.trim().is_empty() {
            return Err(bad("brokers", "must not be empty"));
        }
        if self.topic.trim().is_empty() {
            return Err(bad("topic", "must not be empty"));
        }
        if self.effective_protocol().as_deref() == Some("sasl_plaintext") && !self.allow_plaintext_sasl {
            return Err(bad(
                "security_protocol",
                "sasl_plaintext sends the SASL password in clear: use sasl_ssl, or set \
                 kafka.allow_plaintext_sasl = true for a network you trust",
            ));
        }
        let protocol = self.security_protocol;
        if self.tls.is_some() && !protocol.uses_tls() {
            return Err(bad("tls", "is set, but security_protocol is not ssl or sasl_ssl"));
        }
        match (&self.sasl, protocol.uses_sasl()) {
            (Some(_), false) => {
                return Err(bad(
                    "sasl",
                    "is set, but security_protocol is not sasl_ssl or sasl_plaintext",
                ));
            }
            (None, true) => {
                return Err(bad(
                    "sasl",
                    "is required with security_protocol sasl_ssl or sasl_plaintext",
                ));
            }
            _ => {}
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        if let Some(sasl) = &self.sasl {
            sasl.validate()?;
        }
        Ok(())
    }

    /// Reads the files and variables the settings name (and the SASL variables the
    /// chart sets), checks what they hold (PEM that parses, a password that is there),
    /// and folds the librdkafka properties into `options` under what the operator
    /// wrote there. Every Kafka client of the
    /// process is then built from `options`. Running it again changes nothing.
    pub fn resolve(&mut self) -> Result<(), KafkaSettingsError> {
        self.validate()?;
        // The chart's credential Secret arrives in these variables; with raw SASL options
        // (no `[kafka.sasl]`) they are the credentials, and they win over the file.
        for (variable, option) in [
            (SASL_USERNAME_ENV, "sasl.username"),
            (SASL_PASSWORD_ENV, "sasl.password"),
        ] {
            if let Ok(value) = std::env::var(variable)
                && !value.is_empty()
            {
                self.options.insert(option.to_string(), value);
            }
        }
        let mut properties = BTreeMap::new();
        properties.insert(
            "security.protocol".to_string(),
            self.security_protocol.property().to_string(),
        );
        if let Some(tls) = &self.tls {
            tls.properties(&mut properties)?;
        }
        // librdkafka's OpenSSL is built here, so its default CA path is not the system's:
        // without a CA of the operator's, look where the system keeps its roots.
        let tls = matches!(self.effective_protocol().as_deref(), Some("ssl" | "sasl_ssl"));
        let has_ca = ["ssl.ca.location", "ssl.ca.pem"]
            .iter()
            .any(|key| properties.contains_key(*key) || self.options.contains_key(*key));
        if tls && !has_ca {
            properties.insert("ssl.ca.location".into(), "probe".into());
        }
        if let Some(sasl) = &self.sasl {
            sasl.properties(&mut properties)?;
        }
        for (key, value) in properties {
            self.options.entry(key).or_insert(value);
        }
        Ok(())
    }
}

/// One of a file or a variable, never both; `fields` are the two settings' names.
fn one_of<'a>(
    file: &'a Option<PathBuf>,
    env: &'a Option<String>,
    fields: (&'static str, &'static str),
) -> Result<Option<Secret<'a>>, KafkaSettingsError> {
    match (file, env) {
        (Some(_), Some(_)) => Err(bad(fields.0, "set either the _file or the _env setting, not both")),
        (Some(path), None) => Ok(Some(Secret::file(path, fields.0))),
        (None, Some(name)) => Ok(Some(Secret::env(name, fields.1))),
        (None, None) => Ok(None),
    }
}

/// Where a secret comes from, and the setting that named it (for errors).
struct Secret<'a> {
    from: Source<'a>,
    field: &'static str,
}

enum Source<'a> {
    File(&'a Path),
    Env(&'a str),
}

impl<'a> Secret<'a> {
    fn file(path: &'a Path, field: &'static str) -> Self {
        Secret {
            from: Source::File(path),
            field,
        }
    }

    fn env(name: &'a str, field: &'static str) -> Self {
        Secret {
            from: Source::Env(name),
            field,
        }
    }

    fn read(&self) -> Result<String, KafkaSettingsError> {
        match self.from {
            Source::File(path) => std::fs::read_to_string(path)
                .map_err(|error| bad(self.field, format!("cannot read {}: {error}", path.display()))),
            Source::Env(name) => match std::env::var(name) {
                Ok(value) if !value.is_empty() => Ok(value),
                _ => Err(bad(self.field, format!("the environment variable {name} is not set"))),
            },
        }
    }

    /// A one-line value (a password, a passphrase): a file written by `echo` or a Secret
    /// editor ends with a newline the broker would take as part of it.
    fn read_line(&self) -> Result<String, KafkaSettingsError> {
        Ok(self.read()?.trim_end_matches(['\r', '\n']).to_string())
    }

    /// A PEM, checked by `check`, handed to librdkafka by path when it is a file (it
    /// re-reads it on reconnect) or inline when it is a variable.
    fn pem(
        &self,
        check: impl FnOnce(&'static str, &str) -> Result<(), KafkaSettingsError>,
        (location, inline): (&str, &str),
        properties: &mut BTreeMap<String, String>,
    ) -> Result<(), KafkaSettingsError> {
        let pem = self.read()?;
        check(self.field, &pem)?;
        match self.from {
            Source::File(path) => properties.insert(location.into(), path.display().to_string()),
            Source::Env(_) => properties.insert(inline.into(), pem),
        };
        Ok(())
    }
}

const CA: (&str, &str) = ("tls.ca_file", "tls.ca_env");
const CERT: (&str, &str) = ("tls.cert_file", "tls.cert_env");
const KEY: (&str, &str) = ("tls.key_file", "tls.key_env");
const KEY_PASSWORD: (&str, &str) = ("tls.key_password_file", "tls.key_password_env");
const SASL_PASSWORD: (&str, &str) = ("sasl.password_file", "sasl.password_env");

impl KafkaTls {
    fn validate(&self) -> Result<(), KafkaSettingsError> {
        one_of(&self.ca_file, &self.ca_env, CA)?;
        let cert = one_of(&self.cert_file, &self.cert_env, CERT)?;
        let key = one_of(&self.key_file, &self.key_env, KEY)?;
        one_of(&self.key_password_file, &self.key_password_env, KEY_PASSWORD)?;
        match (cert.is_some(), key.is_some()) {
            (true, false) => Err(bad("tls.key_file", "is required with a client certificate")),
            (false, true) => Err(bad("tls.cert_file", "is required with a client key")),
            _ => Ok(()),
        }
    }

    /// Every PEM is parsed here first, so a broken one fails at start.
    fn properties(&self, properties: &mut BTreeMap<String, String>) -> Result<(), KafkaSettingsError> {
        if let Some(ca) = one_of(&self.ca_file, &self.ca_env, CA)? {
            ca.pem(certificates, ("ssl.ca.location", "ssl.ca.pem"), properties)?;
        }
        if let Some(cert) = one_of(&self.cert_file, &self.cert_env, CERT)? {
            cert.pem(
                certificates,
                ("ssl.certificate.location", "ssl.certificate.pem"),
                properties,
            )?;
        }
        let password = one_of(&self.key_password_file, &self.key_password_env, KEY_PASSWORD)?;
        if let Some(key) = one_of(&self.key_file, &self.key_env, KEY)? {
            // An encrypted key only librdkafka can open, with its passphrase.
            let encrypted = password.is_some();
            let check = |field: &'static str, pem: &str| match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
                Err(_) if !encrypted => Err(bad(field, "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")),
                _ => Ok(()),
            };
            key.pem(check, ("ssl.key.location", "ssl.key.pem"), properties)?;
        }
        if let Some(password) = password {
            properties.insert("ssl.key.password".into(), password.read_line()?);
        }
        if !self.verify_hostname {
            properties.insert("ssl.endpoint.identification.algorithm".into(), "none".into());
        }
        Ok(())
    }
}

fn certificates(field: &'static str, pem: &str) -> Result<(), KafkaSettingsError> {
    let parsed = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| bad(field, format!("not PEM certificates ({error})")))?;
    if parsed.is_empty() {
        return Err(bad(field, "holds no PEM certificate"));
    }
    Ok(())
}

impl KafkaSasl {
    fn validate(&self) -> Result<(), KafkaSettingsError> {
        if self.username.is_some() && self.username_env.is_some() {
            return Err(bad("sasl.username", "set either username or username_env, not both"));
        }
        one_of(&self.password_file, &self.password_env, SASL_PASSWORD)?;
        Ok(())
    }

    fn properties(&self, properties: &mut BTreeMap<String, String>) -> Result<(), KafkaSettingsError> {
        properties.insert("sasl.mechanism".into(), self.mechanism.property().into());
        let username = match (&self.username, &self.username_env) {
            (Some(name), _) => name.clone(),
            (None, Some(variable)) => Secret::env(variable, "sasl.username_env").read()?,
            (None, None) => Secret::env(SASL_USERNAME_ENV, "sasl.username").read()?,
        };
        let password = one_of(&self.password_file, &self.password_env, SASL_PASSWORD)?
            .unwrap_or_else(|| Secret::env(SASL_PASSWORD_ENV, SASL_PASSWORD.0));
        properties.insert("sasl.username".into(), username);
        properties.insert("sasl.password".into(), password.read_line()?);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
