//! The two metadata databases every control test runs against: a SQLite file, and a
//! fresh database on the PostgreSQL server (127.0.0.1:5432 unless
//! SWITCHYARD_TEST_POSTGRES names another server's maintenance database).

#![allow(dead_code)]

use switchyard_control::model::{Actor, Workspace};
use switchyard_control::secrets::Sealer;
use switchyard_control::store::Password;
use switchyard_control::{Control, Db};
use switchyard_testkit::TestDatabase;

/// A database for one test; a Postgres one is dropped by [`Backend::finish`].
pub struct Backend {
    pub name: &'static str,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<TestDatabase>,
}

impl Backend {
    pub async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("temp dir");
        Backend {
            name: "sqlite",
            url: Db::sqlite_url(&dir.path().join("control.db")),
            _dir: Some(dir),
            postgres: None,
        }
    }

    pub async fn postgres() -> Backend {
        let database = TestDatabase::create("switchyard_test").await;
        Backend {
            name: "postgres",
            url: database.url.clone(),
            _dir: None,
            postgres: Some(database),
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
        if let Some(database) = self.postgres {
            database.drop_now().await;
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
