//! Every read and change of the metadata, by concern: users, workspaces and members
//! (`workspaces.rs`), sources (`sources.rs`), destinations (`destinations.rs`), a
//! workspace as it runs (`live.rs`). Changes are serialized (one writer at a time in
//! this process; run one admin API replica) and each is written to the audit log in
//! its own transaction.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use switchyard_config::EgressPolicy;

use crate::audit;
use crate::model::*;
use crate::salts;
use crate::secrets::Sealer;
use crate::{ControlError, Db};

mod destinations;
mod live;
mod sources;
mod workspaces;

pub(crate) use destinations::endpoint_settings;
use destinations::runnable;
pub use live::{LiveConfig, LiveSource};
use sources::{check_transforms, source_view};

#[derive(Debug)]
pub struct Control {
    pub(crate) db: Db,
    pub(crate) sealer: Sealer,
    /// The operator's `[egress]`: where a tenant's destination may point.
    egress: Arc<EgressPolicy>,
    /// Source and destination ids the operator's configuration file uses: a tenant can't
    /// take them (the file would win at run time and the tenant's entry never run).
    reserved: Reserved,
    writes: tokio::sync::Mutex<()>,
}

/// Ids the configuration file holds.
#[derive(Debug, Default, Clone)]
pub struct Reserved {
    pub sources: HashSet<String>,
    pub destinations: HashSet<String>,
}

/// A password, or a hash of one carried over from another system (argon2 or bcrypt).
#[derive(Debug, Clone, Copy)]
pub enum Password<'a> {
    Plain(&'a str),
    Hash(&'a str),
}

pub(crate) fn json_text(row: &AnyRow, name: &str) -> Result<Value, ControlError> {
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|e| ControlError::Corrupt(format!("{name}: {e}")))
}

pub(crate) fn strings(value: Value) -> Vec<String> {
    serde_json::from_value(value).unwrap_or_default()
}

impl Control {
    pub fn new(db: Db, sealer: Sealer) -> Self {
        Control {
            db,
            sealer,
            egress: Arc::default(),
            reserved: Reserved::default(),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// Where tenants' destinations may connect (default: public addresses over TLS).
    pub fn with_egress(mut self, egress: Arc<EgressPolicy>) -> Self {
        self.egress = egress;
        self
    }

    /// The ids the operator's configuration file already uses.
    pub fn with_reserved(mut self, reserved: Reserved) -> Self {
        self.reserved = reserved;
        self
    }

    /// A chain as given (`<redacted>` salts kept from `before`), checked: opened, and as
    /// stored text with its salts sealed to `owner`.
    fn transforms_to_store(
        &self,
        owner: &str,
        given: &[Value],
        before: &[Value],
    ) -> Result<(Vec<Value>, String), ControlError> {
        let plain = salts::fill(given, before)?;
        check_transforms("transforms", &plain)?;
        let sealed = salts::seal(&self.sealer, owner, &plain)?;
        let text = serde_json::to_string(&sealed).map_err(|e| ControlError::invalid("transforms", e.to_string()))?;
        Ok((plain, text))
    }

    fn check_not_reserved(&self, what: &str, id: &str) -> Result<(), ControlError> {
        let ids = if what == "source" {
            &self.reserved.sources
        } else {
            &self.reserved.destinations
        };
        if ids.contains(id) {
            return Err(ControlError::Conflict(format!(
                "{what} id {id:?} is the operator's (in the server's configuration file): choose another id"
            )));
        }
        Ok(())
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Runs `change` in a transaction, one at a time.
    pub(crate) async fn change<T>(
        &self,
        change: impl for<'c> FnOnce(&'c mut AnyConnection) -> futures::future::BoxFuture<'c, Result<T, ControlError>>,
    ) -> Result<T, ControlError> {
        let _one_writer = self.writes.lock().await;
        let mut tx = self.db.pool.begin().await?;
        let out = change(&mut tx).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Walks the whole audit chain under this master key's audit key.
    pub async fn verify_audit(&self) -> Result<audit::AuditReport, ControlError> {
        audit::verify(&self.db, &self.sealer.audit_key()).await
    }

    pub async fn audit(&self, workspace_id: &str, limit: i64) -> Result<Vec<AuditEntry>, ControlError> {
        audit::entries(&self.db, workspace_id, limit.clamp(1, 1000)).await
    }
}
