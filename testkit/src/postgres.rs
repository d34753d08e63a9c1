//! A fresh database per test on the PostgreSQL server at 127.0.0.1:5432 (trust auth),
//! or on the server whose maintenance-database URL is in SWITCHYARD_TEST_POSTGRES.

use sqlx::{Connection, PgConnection};

pub const POSTGRES_ENV: &str = "SWITCHYARD_TEST_POSTGRES";

/// The maintenance database's URL, as the server's superuser.
pub fn admin_url() -> String {
    std::env::var(POSTGRES_ENV).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|error| {
        panic!(
            "PostgreSQL is not reachable at {url} ({error}). These tests run against it: apt-get install \
             postgresql (trust auth for local TCP), or set {POSTGRES_ENV} to a server's maintenance-database URL"
        )
    })
}

/// A database made for one test; [`TestDatabase::drop_now`] removes it.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    /// As the superuser.
    pub url: String,
}

impl TestDatabase {
    pub async fn create(prefix: &str) -> TestDatabase {
        let admin = admin_url();
        let mut connection = connect(&admin).await;
        let name = format!("{prefix}_{}", unique());
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .expect("create test database");
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("{POSTGRES_ENV} must end in /DATABASE"),
        };
        TestDatabase { name, url }
    }

    /// This database's URL as another user (`postgres://USER:PASSWORD@host/db`).
    pub fn url_as(&self, user: &str, password: &str) -> String {
        let (scheme, rest) = self.url.split_once("://").expect("scheme");
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{user}:{password}@{host}")
    }

    /// Runs statements on this database as the superuser.
    pub async fn execute(&self, sql: &str) {
        let mut connection = connect(&self.url).await;
        sqlx::raw_sql(sql)
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// Rows of a query as JSON objects (`SELECT row_to_json(t) FROM (...) t`).
    pub async fn json_rows(&self, query: &str) -> Vec<serde_json::Value> {
        let mut connection = connect(&self.url).await;
        let texts: Vec<String> = sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM ({query}) t"))
            .fetch_all(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{query}: {error}"));
        texts
            .iter()
            .map(|text| serde_json::from_str(text).expect("row JSON"))
            .collect()
    }

    /// Drops the database, closing whatever still uses it.
    pub async fn drop_now(self) {
        let mut connection = connect(&admin_url()).await;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut connection)
            .await
            .expect("drop test database");
    }
}

/// Drops a role a test made (after the databases it owns objects in).
pub async fn drop_role(role: &str) {
    let mut connection = connect(&admin_url()).await;
    sqlx::raw_sql(&format!("DROP ROLE IF EXISTS {role}"))
        .execute(&mut connection)
        .await
        .expect("drop test role");
}

/// A name part unique to this process and moment.
pub fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}_{nanos}", std::process::id())
}
