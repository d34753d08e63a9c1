//! Backups of the metadata: every table as JSON, age-encrypted to the master key (so
//! only a holder of the master key can read or restore one, and sealed credentials stay
//! sealed inside), written to an object store as `<prefix>/control-<UTC time>.json.age`.
//! `switchyard control serve` takes one every `interval_secs` (an hour by default);
//! `switchyard backup` takes one now; `switchyard restore` brings one back into an
//! empty database (or, with `force`, replaces what is there) in one transaction.

use std::sync::Arc;

use base64::Engine;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Deserialize;
use serde_json::{Map, Value};
use sqlx::Row;
use switchyard_storage::StoreConfig;
use switchyard_storage::object::{decrypt, encrypt};

use crate::{ControlError, Db};

/// `[control.backup]`: where backups go and how often the server takes one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    pub store: StoreConfig,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How often `control serve` takes one (at least 60 s); 0: never, because a
    /// scheduler of the operator's runs `switchyard backup` (the chart's CronJob), so
    /// that several replicas don't each take one.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
}

fn default_prefix() -> String {
    "control-backups".into()
}

fn default_interval_secs() -> u64 {
    3600
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    OptionalText,
    Int,
    OptionalInt,
    OptionalBytes,
    /// A column added after the first backup format: an older backup has none, and
    /// restores get the column's default.
    IntOr(i64),
    TextOr(&'static str),
}

use Kind::*;

/// Every table, parents before children, with every column: a backup that left one
/// out would restore without it (token scopes, second factors, lockout, policy).
/// `tests/backup.rs` compares this with the live schema of both databases.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "workspaces",
        &[
            ("id", Text),
            ("name", Text),
            ("created_at", Int),
            ("require_mfa", IntOr(0)),
            ("password_login", IntOr(1)),
        ],
    ),
    (
        "users",
        &[
            ("id", Text),
            ("email", Text),
            ("password_hash", OptionalText),
            ("created_at", Int),
            ("failed_logins", IntOr(0)),
            ("locked_until", IntOr(0)),
            ("totp_secret", OptionalBytes),
            ("totp_enabled_at", IntOr(0)),
            ("totp_last_step", IntOr(0)),
        ],
    ),
    (
        "recovery_codes",
        &[("digest", Text), ("user_id", Text), ("used_at", OptionalInt)],
    ),
    (
        "memberships",
        &[
            ("workspace_id", Text),
            ("user_id", Text),
            ("role", Text),
            ("sources", Text),
        ],
    ),
    (
        "tokens",
        &[
            ("digest", Text),
            ("user_id", Text),
            ("kind", Text),
            ("name", Text),
            ("created_at", Int),
            ("expires_at", OptionalInt),
            ("id", OptionalText),
            ("method", TextOr("password")),
            ("mfa", IntOr(0)),
            ("workspace_id", OptionalText),
            ("role", OptionalText),
        ],
    ),
    (
        "sources",
        &[
            ("id", Text),
            ("workspace_id", Text),
            ("name", Text),
            ("settings", Text),
            ("transforms", Text),
            ("created_at", Int),
            ("webhook", OptionalText),
            ("webhook_secret", OptionalBytes),
        ],
    ),
    (
        "write_keys",
        &[
            ("digest", Text),
            ("source_id", Text),
            ("created_at", Int),
            ("expires_at", OptionalInt),
        ],
    ),
    (
        "destinations",
        &[
            ("id", Text),
            ("workspace_id", Text),
            ("kind", Text),
            ("sources", Text),
            ("settings", Text),
            ("credentials", OptionalBytes),
            ("transforms", Text),
            ("created_at", Int),
        ],
    ),
    (
        "audit_log",
        &[
            ("seq", Int),
            ("workspace_id", Text),
            ("at", Int),
            ("actor", Text),
            ("action", Text),
            ("target", Text),
            ("remote", Text),
            ("before_state", Text),
            ("after_state", Text),
            ("prev_hash", Text),
            ("hash", Text),
        ],
    ),
    (
        "sso_logins",
        &[
            ("state", Text),
            ("provider", Text),
            ("pkce_verifier", Text),
            ("nonce", Text),
            ("created_at", Int),
            ("browser", TextOr("")),
            ("link_user_id", OptionalText),
        ],
    ),
    (
        "sso_identities",
        &[
            ("issuer", Text),
            ("subject", Text),
            ("user_id", Text),
            ("provider", Text),
            ("created_at", Int),
        ],
    ),
];

/// The format this version writes; it reads the first one too.
const FORMAT: &str = "switchyard-control-backup/2";
const FORMAT_1: &str = "switchyard-control-backup/1";

/// Every table and its columns as backups hold them.
pub fn covered() -> Vec<(&'static str, Vec<&'static str>)> {
    TABLES
        .iter()
        .map(|(table, columns)| (*table, columns.iter().map(|(name, _)| *name).collect()))
        .collect()
}

fn corrupt(reason: impl std::fmt::Display) -> ControlError {
    ControlError::Corrupt(format!("backup: {reason}"))
}

/// Every row of every table, as JSON (bytes in base64).
pub async fn snapshot(db: &Db) -> Result<Value, ControlError> {
    let mut tables = Map::new();
    for (table, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let rows = sqlx::query(&format!(
            "SELECT {} FROM {table} ORDER BY {}",
            names.join(", "),
            names[0]
        ))
        .fetch_all(&db.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut object = Map::new();
            for (name, kind) in *columns {
                let value = match kind {
                    Text => Value::from(row.try_get::<String, _>(*name)?),
                    OptionalText => row
                        .try_get::<Option<String>, _>(*name)?
                        .map_or(Value::Null, Value::from),
                    Int => Value::from(row.try_get::<i64, _>(*name)?),
                    OptionalInt => row.try_get::<Option<i64>, _>(*name)?.map_or(Value::Null, Value::from),
                    OptionalBytes => row.try_get::<Option<Vec<u8>>, _>(*name)?.map_or(Value::Null, |bytes| {
                        Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
                    }),
                    IntOr(_) => Value::from(row.try_get::<i64, _>(*name)?),
                    TextOr(_) => Value::from(row.try_get::<String, _>(*name)?),
                };
                object.insert((*name).to_string(), value);
            }
            out.push(Value::Object(object));
        }
        tables.insert((*table).to_string(), Value::Array(out));
    }
    Ok(serde_json::json!({"format": FORMAT, "tables": tables}))
}

/// Loads a snapshot into `db` in one transaction. Refuses a database that holds a
/// workspace unless `force`, which first deletes everything in it.
pub async fn load(db: &Db, snapshot: &Value, force: bool) -> Result<usize, ControlError> {
    let first_format = snapshot["format"] == FORMAT_1;
    if snapshot["format"] != FORMAT && !first_format {
        return Err(corrupt("not a Switchyard control backup"));
    }
    let mut tx = db.pool.begin().await?;
    let existing = sqlx::query("SELECT id FROM workspaces").fetch_all(&mut *tx).await?;
    if !existing.is_empty() && !force {
        return Err(ControlError::Conflict(
            "a workspace in the target database: restore into an empty one, or force".into(),
        ));
    }
    for (table, _) in TABLES.iter().rev() {
        sqlx::query(&format!("DELETE FROM {table}")).execute(&mut *tx).await?;
    }
    let mut restored = 0;
    for (table, columns) in TABLES {
        let empty = Vec::new();
        let rows = match snapshot["tables"][*table].as_array() {
            Some(rows) => rows,
            // Tables added since the first format start empty from such a backup.
            None if first_format && matches!(*table, "recovery_codes" | "sso_logins" | "sso_identities") => &empty,
            None => return Err(corrupt(format!("no table {table}"))),
        };
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let placeholders: Vec<String> = (1..=names.len()).map(|n| format!("${n}")).collect();
        let statement = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            placeholders.join(", ")
        );
        for row in rows {
            let mut query = sqlx::query(&statement);
            for (name, kind) in *columns {
                let value = &row[*name];
                let missing = || corrupt(format!("{table}.{name}: {value}"));
                query = match kind {
                    Text => query.bind(value.as_str().ok_or_else(missing)?.to_string()),
                    OptionalText => query.bind(value.as_str().map(str::to_string)),
                    Int => query.bind(value.as_i64().ok_or_else(missing)?),
                    OptionalInt => query.bind(value.as_i64()),
                    OptionalBytes => query.bind(
                        value
                            .as_str()
                            .map(|text| base64::engine::general_purpose::STANDARD.decode(text))
                            .transpose()
                            .map_err(|_| missing())?,
                    ),
                    IntOr(default) if value.is_null() && first_format => query.bind(default),
                    IntOr(_) => query.bind(value.as_i64().ok_or_else(missing)?),
                    TextOr(default) if value.is_null() && first_format => query.bind(default.to_string()),
                    TextOr(_) => query.bind(value.as_str().ok_or_else(missing)?.to_string()),
                };
            }
            query.execute(&mut *tx).await?;
            restored += 1;
        }
    }
    tx.commit().await?;
    Ok(restored)
}

fn store_error(path: &ObjectPath) -> impl Fn(object_store::Error) -> ControlError + '_ {
    move |error| ControlError::Corrupt(format!("backup store at {path}: {error}"))
}

/// Writes a backup now; returns its path.
pub async fn take(
    db: &Db,
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    master: &age::x25519::Identity,
) -> Result<String, ControlError> {
    let plain = serde_json::to_vec(&snapshot(db).await?).map_err(corrupt)?;
    let sealed = encrypt(&plain, &master.to_public()).map_err(ControlError::Crypto)?;
    let path = ObjectPath::from(format!(
        "{prefix}/control-{}.json.age",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    store
        .put(&path, PutPayload::from(sealed))
        .await
        .map_err(store_error(&path))?;
    tracing::info!(path = %path, bytes = plain.len(), "control metadata backed up");
    Ok(path.to_string())
}

/// The backups under `prefix`, oldest first.
pub async fn list(store: &Arc<dyn ObjectStore>, prefix: &str) -> Result<Vec<String>, ControlError> {
    let base = ObjectPath::from(prefix);
    let mut paths: Vec<String> = store
        .list(Some(&base))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .map_err(store_error(&base))?;
    paths.retain(|path| path.ends_with(".json.age"));
    paths.sort();
    Ok(paths)
}

/// Reads and decrypts a backup.
pub async fn read(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    master: &age::x25519::Identity,
) -> Result<Value, ControlError> {
    let location = ObjectPath::from(path);
    let bytes = switchyard_storage::object::fetch(store.as_ref(), &location)
        .await
        .map_err(store_error(&location))?;
    let plain = decrypt(&bytes, master)
        .map_err(|e| ControlError::Crypto(format!("{path}: the master key doesn't open it: {e}")))?;
    serde_json::from_slice(&plain).map_err(|e| corrupt(format!("{path}: {e}")))
}
