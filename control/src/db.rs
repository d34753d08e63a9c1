//! The metadata database: SQLite or Postgres behind sqlx's `Any` driver, migrated on
//! open. Queries use `$1`-style placeholders, which both accept, and only the types
//! both share (TEXT, BIGINT, bytes).

use std::path::Path;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use crate::ControlError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl Db {
    /// The URL of a SQLite file, created when missing.
    pub fn sqlite_url(path: &Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    /// Connects and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Db, ControlError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(ControlError::Url(redact_url(url)));
        };
        // SQLite: one connection. Its writers lock the whole file, and a transaction
        // that reads before it writes can't wait for another writer; admin traffic is light.
        let connections = if backend == Backend::Sqlite { 1 } else { 8 };
        let pool = AnyPoolOptions::new().max_connections(connections).connect(url).await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&pool).await?,
        }
        Ok(Db { pool, backend })
    }
}

/// A URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out_of_urls_in_messages() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/switchyard"),
            "postgres://app:***@db:5432/switchyard"
        );
        assert_eq!(redact_url("sqlite://data/control.db"), "sqlite://data/control.db");
    }
}
