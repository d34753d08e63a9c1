//! The control plane: workspaces, users and their roles, sources (write keys kept as
//! digests) and destinations (credentials sealed under the master key), an
//! append-only, hash-chained audit log of every change, and the admin API over it.
//!
//! Metadata lives in SQLite (a file in the data directory: the embedded default) or
//! Postgres (a URL); the same queries and the same tests run on both (`db.rs`).
//! Every change goes through [`Control`] (`store.rs`), which checks nothing about who
//! asks: the admin API (`api.rs`) checks each route's permission (`roles.rs`) first,
//! and passes the caller on to be written in the audit log (`audit.rs`).

pub mod api;
pub mod apply;
pub mod audit;
pub mod backup;
pub mod config;
mod credentials;
pub mod db;
pub mod debugger;
mod health;
mod http;
pub mod kinds;
pub mod model;
pub mod roles;
mod salts;
pub mod secrets;
pub mod session_api;
pub mod signin;
pub mod sso;
pub mod store;

pub use config::ControlConfig;
pub use db::Db;
pub use model::{Principal, Role};
pub use store::Control;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("metadata database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("metadata database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    Url(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("wrong email or password")]
    BadLogin,
    #[error("too many failed sign-ins: the account is locked until {until} (Unix ms)")]
    Locked { until: i64 },
    #[error("this account signs in with a second factor: send otp (the 6-digit code) or recovery_code")]
    MfaRequired,
    #[error("credentials: {0}")]
    Crypto(String),
    #[error("stored data: {0}")]
    Corrupt(String),
}

impl ControlError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        ControlError::Invalid {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// Milliseconds since the Unix epoch: how times are stored.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
