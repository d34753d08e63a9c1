//! The Postgres warehouse loader. A batch is loaded in one transaction with `COPY`;
//! when the primary key finds some of its rows already there (a retried or replayed
//! batch), it is loaded again writing only the rows whose ids aren't there yet; the
//! `users` table is upserted (a newer identify's traits win, an older one only fills
//! columns still empty). A retried batch therefore adds nothing twice, and two loaders
//! racing on one id make one of them fail on the primary key and retry.
//!
//! Schema changes (a schema, table or column first seen) run before the transaction,
//! one at a time per loader, with `IF NOT EXISTS`, and the table's columns are then
//! read back from the catalog: a value that doesn't fit its column's type, or finds no
//! column (over [`MAX_COLUMNS`]), goes to the row's `_overflow` JSON column under its
//! column's name. Nothing is dropped and no load fails on a type.
//!
//! Errors: a refused permission or login is retryable (an operator fixes the grant and
//! the waiting events load); a data error Postgres still finds is permanent (the batch
//! goes to the dead-letter topic with the reason); anything else is retryable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::Row as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use switchyard_egress::EgressPolicy;
use switchyard_schemas::Event;
use tokio::sync::Mutex;

use crate::LoadError;
use crate::columns::{ColumnType, NULL, escape};
use crate::config::WarehouseConfig;
use crate::flatten::{Row, STANDARD_COLUMNS, identifier, rows};

const UNIQUE_VIOLATION: &str = "23505";

/// Columns a table may get; later new keys go to `_overflow` (Postgres allows 1,600).
pub const MAX_COLUMNS: usize = 1_000;

/// A table's columns as the catalog has them; None: a type the loader doesn't write.
type Shape = foldhash::HashMap<String, Option<ColumnType>>;

pub struct Warehouse {
    pool: PgPool,
    schema_prefix: String,
    /// Known tables by (schema, table); the lock also serializes schema changes.
    shapes: Mutex<HashMap<(String, String), Shape>>,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse")
            .field("schema_prefix", &self.schema_prefix)
            .finish_non_exhaustive()
    }
}

/// What a load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Rows written (users rows counted once per user).
    pub rows: usize,
    /// Rows already in the warehouse (a retried or replayed batch).
    pub existing: usize,
}

impl Warehouse {
    /// Connects lazily: a warehouse that is down now fails the first load (retried),
    /// not the destination's start.
    ///
    /// The host is resolved and checked against `egress` here, and every connection of
    /// the pool goes to the address that was checked, so the name can't be re-pointed
    /// at an internal address afterwards. With `sslmode=verify-full` the pool connects by
    /// name instead: the certificate check needs it, and it binds the connection to that
    /// name (a re-pointed address can't present the name's certificate).
    pub fn new(config: &WarehouseConfig, egress: &EgressPolicy) -> Result<Warehouse, LoadError> {
        let mut options = PgConnectOptions::from_str(&config.url)
            .map_err(|error| LoadError::permanent(format!("warehouse url: {error}")))?
            .options([("statement_timeout", config.timeout_ms.to_string())])
            .application_name("switchyard");
        if options.get_socket().is_some() {
            return Err(LoadError::permanent(
                "warehouse url: a unix socket is not a destination",
            ));
        }
        let addrs = egress
            .resolve(options.get_host(), options.get_port())
            .map_err(|error| {
                let reason = format!("warehouse url: {error}");
                if error.is_retriable() {
                    LoadError::retryable(reason)
                } else {
                    LoadError::permanent(reason)
                }
            })?;
        if !matches!(options.get_ssl_mode(), PgSslMode::VerifyFull) {
            let checked = addrs[0].ip().to_string();
            options = options.host(&checked);
        }
        if let Some(password) = &config.password {
            options = options.password(password);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_millis(config.timeout_ms))
            .connect_lazy_with(options);
        Ok(Warehouse {
            pool,
            schema_prefix: config.schema_prefix.clone(),
            shapes: Mutex::new(HashMap::new()),
        })
    }

    /// The schema a source's tables go to.
    pub fn schema_of(&self, source_id: &str) -> String {
        identifier(&format!("{}{source_id}", self.schema_prefix))
    }

    pub async fn load(&self, source_id: &str, events: &[Arc<Event>]) -> Result<Loaded, LoadError> {
        let schema = self.schema_of(source_id);
        let tables = table_rows(events);
        let result = async {
            let shapes = self.prepare(&schema, &tables).await?;
            // Most batches are new: copy at once, and look ids up only when the primary
            // key says some rows are already there (a retried or replayed batch).
            match self.write(&schema, &tables, &shapes, false).await {
                Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some(UNIQUE_VIOLATION) => {
                    self.write(&schema, &tables, &shapes, true).await
                }
                other => other,
            }
        }
        .await;
        if result.is_err() {
            // Someone may have changed a table under us: read the catalog again next time.
            self.shapes.lock().await.retain(|(s, _), _| *s != schema);
        }
        result.map_err(|error| classify(error, &schema))
    }

    /// Creates what is missing and returns each table's columns.
    async fn prepare(
        &self,
        schema: &str,
        tables: &BTreeMap<String, Vec<Row>>,
    ) -> Result<HashMap<String, Shape>, sqlx::Error> {
        let mut shapes = self.shapes.lock().await;
        let mut prepared = HashMap::new();
        for (table, rows) in tables {
            let key = (schema.to_string(), table.clone());
            if !shapes.contains_key(&key) {
                sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                    .execute(&self.pool)
                    .await?;
                sqlx::raw_sql(&create_table(schema, table)).execute(&self.pool).await?;
                shapes.insert(key.clone(), self.catalog(schema, table).await?);
            }
            let shape = shapes.get(&key).cloned().unwrap_or_default();
            let mut added: Vec<(String, ColumnType)> = Vec::new();
            for row in rows {
                for (name, cell) in &row.cells {
                    if !shape.contains_key(name)
                        && !added.iter().any(|(n, _)| n == name)
                        && shape.len() + added.len() < MAX_COLUMNS
                    {
                        added.push((name.clone(), ColumnType::of(cell)));
                    }
                }
            }
            if !added.is_empty() {
                let columns: Vec<String> = added
                    .iter()
                    .map(|(name, kind)| format!("ADD COLUMN IF NOT EXISTS \"{name}\" {}", kind.sql()))
                    .collect();
                sqlx::raw_sql(&format!("ALTER TABLE \"{schema}\".\"{table}\" {}", columns.join(", ")))
                    .execute(&self.pool)
                    .await?;
                tracing::info!(schema, table, columns = added.len(), "warehouse columns added");
                shapes.insert(key.clone(), self.catalog(schema, table).await?);
            }
            prepared.insert(table.clone(), shapes.get(&key).cloned().unwrap_or_default());
        }
        Ok(prepared)
    }

    async fn catalog(&self, schema: &str, table: &str) -> Result<Shape, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT column_name::text AS name, data_type::text AS kind FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2",
        )
        .bind(schema)
        .bind(table)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                Ok((row.try_get("name")?, ColumnType::from_catalog(&kind)))
            })
            .collect()
    }

    async fn write(
        &self,
        schema: &str,
        tables: &BTreeMap<String, Vec<Row>>,
        shapes: &HashMap<String, Shape>,
        look_up_existing: bool,
    ) -> Result<Loaded, sqlx::Error> {
        let mut loaded = Loaded::default();
        let mut tx = self.pool.begin().await?;
        for (table, rows) in tables {
            let empty = Shape::default();
            let shape = shapes.get(table).unwrap_or(&empty);
            let target = format!("\"{schema}\".\"{table}\"");
            if table == "users" {
                let (columns, data) = encode(rows.iter(), shape);
                sqlx::raw_sql(&format!(
                    "CREATE TEMP TABLE \"_switchyard_users\" (LIKE {target} INCLUDING DEFAULTS) ON COMMIT DROP"
                ))
                .execute(&mut *tx)
                .await?;
                copy(&mut tx, "\"_switchyard_users\"", &columns, data).await?;
                sqlx::raw_sql(&upsert_users(&target, &columns))
                    .execute(&mut *tx)
                    .await?;
                loaded.rows += rows.len();
                continue;
            }
            let mut existing: HashSet<String> = HashSet::new();
            if look_up_existing {
                let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
                existing = sqlx::query_scalar(&format!("SELECT id FROM {target} WHERE id = ANY($1)"))
                    .bind(&ids)
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .collect();
            }
            let mut seen = HashSet::new();
            let fresh: Vec<&Row> = rows
                .iter()
                .filter(|row| !existing.contains(&row.id) && seen.insert(row.id.as_str()))
                .collect();
            loaded.existing += rows.len() - fresh.len();
            loaded.rows += fresh.len();
            if fresh.is_empty() {
                continue;
            }
            let (columns, data) = encode(fresh.into_iter(), shape);
            copy(&mut tx, &target, &columns, data).await?;
        }
        tx.commit().await?;
        Ok(loaded)
    }

    /// For tests and operators: the pool, to inspect what was loaded.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Rows per table; a batch's users rows merged per user in event order.
fn table_rows(events: &[Arc<Event>]) -> BTreeMap<String, Vec<Row>> {
    let mut tables: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut users: HashMap<String, usize> = HashMap::new();
    for event in events {
        for (table, row) in rows(event) {
            if row.id.is_empty() {
                continue;
            }
            let list = tables.entry(table.clone()).or_default();
            if table == "users" {
                if let Some(&at) = users.get(&row.id) {
                    list[at].merge(row);
                    continue;
                }
                users.insert(row.id.clone(), list.len());
            }
            list.push(row);
        }
    }
    tables
}

fn create_table(schema: &str, table: &str) -> String {
    let mut columns = vec!["\"id\" text PRIMARY KEY".to_string()];
    if table == "users" {
        columns.push("\"received_at\" timestamptz".into());
    } else {
        columns.extend(
            STANDARD_COLUMNS
                .iter()
                .map(|(name, kind)| format!("\"{name}\" {}", kind.sql())),
        );
    }
    columns.push("\"_overflow\" jsonb".into());
    columns.push("\"uuid_ts\" timestamptz NOT NULL DEFAULT now()".into());
    format!(
        "CREATE TABLE IF NOT EXISTS \"{schema}\".\"{table}\" ({})",
        columns.join(", ")
    )
}

/// The columns this batch fills (in first-seen order) and the rows in COPY text format.
fn encode<'a>(rows: impl Iterator<Item = &'a Row> + Clone, shape: &Shape) -> (Vec<String>, String) {
    let mut columns: Vec<String> = vec!["id".into()];
    let mut index: foldhash::HashMap<&str, (usize, ColumnType)> = foldhash::HashMap::default();
    for row in rows.clone() {
        for (name, _) in &row.cells {
            if !index.contains_key(name.as_str())
                && let Some(Some(kind)) = shape.get(name)
            {
                index.insert(name, (columns.len(), *kind));
                columns.push(name.clone());
            }
        }
    }
    columns.push("_overflow".into());
    let mut data = buffer();
    // Each row's fields are written to `scratch` as they come, then in column order.
    let mut scratch = String::new();
    let mut spans: Vec<Option<(usize, usize)>> = Vec::new();
    let count = rows.clone().count();
    for (n, row) in rows.enumerate() {
        if n == 1 {
            // Sized from the first row: growing a multi-megabyte buffer by doubling
            // copied and zeroed more memory than the rows themselves.
            data.reserve(data.len() * (count + count / 4));
        }
        scratch.clear();
        spans.clear();
        spans.resize(columns.len(), None);
        let mut overflow: Option<Map<String, Value>> = None;
        for (name, cell) in &row.cells {
            let start = scratch.len();
            match index.get(name.as_str()) {
                Some(&(at, kind)) if kind.encode(cell, &mut scratch) => spans[at] = Some((start, scratch.len())),
                _ => {
                    overflow
                        .get_or_insert_with(|| row.overflow.clone())
                        .insert(name.clone(), cell.to_json());
                }
            }
        }
        escape(&row.id, &mut data);
        for span in &spans[1..columns.len() - 1] {
            data.push('\t');
            match span {
                Some((start, end)) => data.push_str(&scratch[*start..*end]),
                None => data.push_str(NULL),
            }
        }
        data.push('\t');
        match overflow.as_ref().unwrap_or(&row.overflow) {
            empty if empty.is_empty() => data.push_str(NULL),
            overflow => escape(&serde_json::to_string(overflow).unwrap_or_default(), &mut data),
        }
        data.push('\n');
    }
    (columns, data)
}

/// COPY buffers kept for the next batch: a fresh multi-megabyte buffer per batch cost
/// more in page faults than encoding the rows. Shared by every loader in the process,
/// so a thousand warehouse destinations don't each keep one.
static BUFFERS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
const KEPT_BUFFERS: usize = 4;
const KEPT_BUFFER_BYTES: usize = 64 << 20;

fn buffer() -> String {
    let mut buffer = BUFFERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop()
        .unwrap_or_default();
    buffer.clear();
    buffer
}

fn keep(buffer: String) {
    let mut buffers = BUFFERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if buffers.len() < KEPT_BUFFERS && buffer.capacity() <= KEPT_BUFFER_BYTES {
        buffers.push(buffer);
    }
}

async fn copy(
    connection: &mut sqlx::PgConnection,
    target: &str,
    columns: &[String],
    data: String,
) -> Result<(), sqlx::Error> {
    let list: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let sent = async {
        let mut copy = connection
            .copy_in_raw(&format!("COPY {target} ({}) FROM STDIN", list.join(", ")))
            .await?;
        copy.send(data.as_bytes()).await?;
        copy.finish().await
    }
    .await;
    keep(data);
    sent.map(drop)
}

/// A newer row's values win; an older one (a late retry) only fills empty columns.
fn upsert_users(target: &str, columns: &[String]) -> String {
    let list: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let newer = "(EXCLUDED.\"received_at\" IS NULL OR u.\"received_at\" IS NULL OR EXCLUDED.\"received_at\" >= u.\"received_at\")";
    let mut sets: Vec<String> = columns
        .iter()
        .filter(|c| !matches!(c.as_str(), "id" | "received_at" | "_overflow"))
        .map(|c| {
            format!(
                "\"{c}\" = CASE WHEN {newer} THEN COALESCE(EXCLUDED.\"{c}\", u.\"{c}\") ELSE COALESCE(u.\"{c}\", EXCLUDED.\"{c}\") END"
            )
        })
        .collect();
    sets.push("\"received_at\" = GREATEST(u.\"received_at\", EXCLUDED.\"received_at\")".into());
    sets.push(format!(
        "\"_overflow\" = CASE WHEN {newer} THEN COALESCE(u.\"_overflow\", '{{}}') || COALESCE(EXCLUDED.\"_overflow\", '{{}}') \
         ELSE COALESCE(EXCLUDED.\"_overflow\", '{{}}') || COALESCE(u.\"_overflow\", '{{}}') END"
    ));
    sets.push("\"uuid_ts\" = now()".into());
    format!(
        "INSERT INTO {target} AS u ({cols}) SELECT {cols} FROM \"_switchyard_users\" ON CONFLICT (\"id\") DO UPDATE SET {}",
        sets.join(", "),
        cols = list.join(", ")
    )
}

fn classify(error: sqlx::Error, schema: &str) -> LoadError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let message = db.message();
            if code == "42501" {
                LoadError::retryable(format!(
                    "the warehouse user may not write here ({message}); grant it CREATE on the database, or \
                     USAGE and CREATE on schema {schema:?} and INSERT, UPDATE, SELECT on its tables"
                ))
            } else if code.starts_with("28") {
                LoadError::retryable(format!("the warehouse refused the credentials: {message}"))
            } else if code.starts_with("22") {
                LoadError::permanent(format!("the warehouse refused a value: {message} (SQLSTATE {code})"))
            } else {
                LoadError::retryable(format!("warehouse: {message} (SQLSTATE {code})"))
            }
        }
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => {
            LoadError::retryable(format!("warehouse connection: {error}"))
        }
        _ => LoadError::retryable(format!("warehouse unreachable: {error}")),
    }
}
