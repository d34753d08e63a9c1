//! The two metadata databases every control test runs against: a SQLite file, and a
//! fresh database on the PostgreSQL server (127.0.0.1:5432 unless
//! SWITCHYARD_TEST_POSTGRES names another server's maintenance database).

#![allow(dead_code)]

use sqlx::Connection;
use switchyard_control::model::{Actor, Workspace};
use switchyard_control::secrets::Sealer;
use switchyard_control::store::Password;
use switchyard_control::{Control, Db};

pub const POSTGRES_ENV: &str = "SWITCHYARD_TEST_POSTGRES";

fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_ENV).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database for one test; a Postgres one is dropped by [`Backend::finish`].
pub struct Backend {
    pub name: &'static str,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_db: Option<String>,
}

impl Backend {
    pub async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("temp dir");
        Backend {
            name: "sqlite",
            url: Db::sqlite_url(&dir.path().join("control.db")),
            _dir: Some(dir),
            postgres_db: None,
        }
    }

    pub async fn postgres() -> Backend {
        let admin = postgres_admin_url();
        let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|error| {
            panic!(
                "PostgreSQL is not reachable at {admin} ({error}). The control tests run against it: \
                 apt-get install postgresql (trust auth for local TCP), or set {POSTGRES_ENV} to a server's \
                 maintenance-database URL"
            )
        });
        let name = format!("switchyard_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .expect("create test database");
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("{POSTGRES_ENV} must end in /DATABASE"),
        };
        Backend {
            name: "postgres",
            url,
            _dir: None,
            postgres_db: Some(name),
        }
    }

    /// Both, SQLite first.
    pub async fn both() -> Vec<Backend> {
        vec![Backend::sqlite().await, Backend::postgres().await]
    }

    pub async fn control(&self, master: &age::x25519::Identity) -> Control {
        let db = Db::open(&self.url).await.expect("open metadata database");
        Control::new(db, Sealer::from_master(master))
    }

    /// Drops a Postgres test database (after `control`'s pool is closed).
    pub async fn finish(self, control: Control) {
        control.db().pool.close().await;
        if let Some(name) = &self.postgres_db {
            let mut connection = sqlx::PgConnection::connect(&postgres_admin_url())
                .await
                .expect("connect");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut connection)
                .await
                .expect("drop test database");
        }
    }
}

/// The password every test user signs in with.
pub const OWNER_PASSWORD: &str = "a long enough password";

/// A workspace "Acme" owned by owner@example.com.
pub async fn owned_workspace(control: &Control, actor: &Actor) -> Workspace {
    let owner = control
        .create_user(actor, "owner@example.com", Password::Plain(OWNER_PASSWORD))
        .await
        .expect("owner");
    control
        .create_workspace(actor, "Acme", &owner)
        .await
        .expect("workspace")
}
