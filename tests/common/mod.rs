//! Test databases shared by the integration tests: a fresh SQLite file in a temporary
//! directory, or a fresh schema in the PostgreSQL database named by
//! `SOLIDQ_TEST_POSTGRES_URL`. Each `TestDb` is private to one test, so tests run in parallel.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use solidq::config::DatabaseUrl;
use solidq::store::postgres::PgStore;
use solidq::store::sqlite::SqliteStore;
use solidq::store::{SharedStore, Store};

/// Environment variable naming the PostgreSQL database tests may create schemas in.
pub const POSTGRES_URL_VAR: &str = "SOLIDQ_TEST_POSTGRES_URL";

/// Connections per test pool: small, many tests run at once.
pub const TEST_POOL_SIZE: u32 = 4;

/// A migrated, private database and a store connected to it. Dropping it removes the database
/// (the SQLite directory, or the PostgreSQL schema).
pub struct TestDb {
    /// URL of the database (for stores or processes the test starts itself).
    pub url: DatabaseUrl,
    /// A store connected to it, already migrated.
    pub store: SharedStore,
    // Declared after `store` so that the store's connections close before cleanup.
    _guard: Guard,
}

enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(SchemaGuard),
}

impl TestDb {
    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Another store on the same database, with its own pools (and, on PostgreSQL, its own
    /// process sessions): like a second OS process.
    pub fn connect_again(&self) -> SharedStore {
        solidq::store::connect(&self.url, TEST_POOL_SIZE).expect("connecting a second store")
    }

    /// The PostgreSQL URL (with the schema's search_path), if this is a PostgreSQL database.
    pub fn postgres_url(&self) -> Option<&str> {
        match &self.url {
            DatabaseUrl::Postgres(url) => Some(url),
            DatabaseUrl::Sqlite(_) => None,
        }
    }
}

/// A fresh, migrated SQLite database in its own temporary directory.
pub fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let path = dir.path().join("solidq.sqlite3");
    let store = SqliteStore::open(&path, TEST_POOL_SIZE).expect("opening the SQLite database");
    store.migrate().expect("migrating the SQLite database");
    TestDb { url: DatabaseUrl::Sqlite(path), store: Arc::new(store), _guard: Guard::Sqlite(dir) }
}

/// A fresh, migrated schema in the database named by `SOLIDQ_TEST_POSTGRES_URL`, or `None`
/// (after saying so on stderr) when the variable is unset.
pub fn postgres_db() -> Option<TestDb> {
    let Ok(base) = std::env::var(POSTGRES_URL_VAR) else {
        eprintln!("SKIPPED: {POSTGRES_URL_VAR} is not set, PostgreSQL test skipped");
        return None;
    };
    let schema = unique_schema_name();
    let mut admin =
        PgConnection::establish(&base).unwrap_or_else(|err| panic!("connecting to {POSTGRES_URL_VAR}: {err}"));
    admin.batch_execute(&format!("CREATE SCHEMA {schema}")).expect("creating the test schema");
    let guard = SchemaGuard { base, schema };
    let url = guard.url();
    let store = PgStore::connect(&url, TEST_POOL_SIZE).expect("connecting to PostgreSQL");
    store.migrate().expect("migrating the PostgreSQL schema");
    Some(TestDb { url: DatabaseUrl::Postgres(url), store: Arc::new(store), _guard: Guard::Postgres(guard) })
}

/// `solidq_t_<pid>_<counter>_<random>`: unique across parallel tests and test processes.
fn unique_schema_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("solidq_t_{}_{}_{:08x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), fastrand::u32(..))
}

/// Drops its schema, with everything in it, when dropped.
struct SchemaGuard {
    base: String,
    schema: String,
}

impl SchemaGuard {
    /// The base URL with `search_path` set to the schema.
    fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{separator}options=-csearch_path%3D{}", self.base, self.schema)
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.base) {
            let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}
