//! `[control]` in the configuration file: where the metadata lives and where the admin
//! API listens.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// `sqlite://PATH?mode=rwc` (the embedded default) or `postgres://...`.
    #[serde(default = "default_database_url")]
    pub database_url: String,
    /// Where `switchyard control serve` listens.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// HTTPS (TLS 1.2 and 1.3): both, or `allow_plain_http` for a local trial.
    #[serde(default)]
    pub tls_cert_path: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_path: Option<PathBuf>,
    #[serde(default)]
    pub allow_plain_http: bool,
    /// The operator's proxies in front of the server that append to `X-Forwarded-For`
    /// (1 behind an Ingress): the client address sign-in throttling and the audit log
    /// use is read through them. 0 (the default): the peer's address.
    #[serde(default)]
    pub trusted_proxies: usize,
    /// Without `SWITCHYARD_MASTER_KEY`(`_FILE`): the master key file, made on first use
    /// (mode 0600). Production sets the variable from a secret store instead.
    #[serde(default = "default_master_key_file")]
    pub master_key_file: PathBuf,
    /// With a workspace id, ingest and routers also run that workspace's sources and
    /// destinations, read from the database every `refresh_secs`: a change made through
    /// the admin API reaches running actors within seconds, with no restart.
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// Where `switchyard backup` and the server's hourly backups go.
    #[serde(default)]
    pub backup: Option<crate::backup::BackupConfig>,
    /// Event debugger streams open at once on one server (each reads every event of
    /// the ingest topic's sources it watches); more are refused with 429.
    #[serde(default = "default_debugger_streams")]
    pub debugger_streams: usize,
    /// OpenID Connect providers administrators sign in through (`crate::sso`).
    #[serde(default)]
    pub sso: Vec<crate::sso::SsoConfig>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            database_url: default_database_url(),
            listen: default_listen(),
            tls_cert_path: None,
            tls_key_path: None,
            allow_plain_http: false,
            trusted_proxies: 0,
            master_key_file: default_master_key_file(),
            workspace: None,
            refresh_secs: default_refresh_secs(),
            backup: None,
            debugger_streams: default_debugger_streams(),
            sso: Vec::new(),
        }
    }
}

fn default_database_url() -> String {
    "sqlite://data/control.db?mode=rwc".into()
}

fn default_listen() -> String {
    "127.0.0.1:8443".into()
}

fn default_debugger_streams() -> usize {
    32
}

fn default_refresh_secs() -> u64 {
    2
}

fn default_master_key_file() -> PathBuf {
    PathBuf::from("data/master.key")
}
