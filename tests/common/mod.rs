//! What the integration tests share: test databases, backend tests written once
//! ([`backend_test!`]) and the one list of backends they run on ([`for_each_backend!`]), test
//! jobs and handlers, a log recorder and database outages on demand.
//!
//! A [`TestDb`] is a fresh SQLite file in a temporary directory, a fresh schema in the
//! PostgreSQL database named by `SOLIDQ_TEST_POSTGRES_URL`, or a fresh database on the MySQL or
//! MariaDB server named by `SOLIDQ_TEST_MYSQL_URL` (built with the `mysql` feature); each is
//! private to one test, so tests run in parallel. Without its variable (or, for MySQL, without
//! the feature), a backend's tests print `SKIPPED: …` and pass.
#![allow(dead_code, unused_macros, unused_imports)]

pub mod fixtures;
pub mod log;
pub mod outage;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
#[cfg(feature = "mysql")]
use diesel::MysqlConnection;
use diesel::{Connection, PgConnection, SqliteConnection};
use solidq::{DatabaseUrl, SharedStore, Store};

/// Environment variable naming the PostgreSQL database tests may create schemas in.
pub const POSTGRES_URL_VAR: &str = "SOLIDQ_TEST_POSTGRES_URL";

/// Environment variable naming a MySQL or MariaDB server (any database on it) where tests may
/// create databases of their own; its user needs `CREATE` and `DROP`.
pub const MYSQL_URL_VAR: &str = "SOLIDQ_TEST_MYSQL_URL";

/// Connections per test pool: small, many tests run at once.
pub const TEST_POOL_SIZE: u32 = 4;

/// Calls `$callback!(backend_name, test_db_expression, args…)` once per backend: the one list
/// of backends. `test_db_expression` is an `Option<TestDb>` (`None`: skipped, and said so).
/// Adding a backend adds one line here.
macro_rules! for_each_backend {
    ($($callback:ident)::+ ! ($($args:tt)*)) => {
        $($callback)::+!(sqlite, Some($crate::common::TestDb::sqlite()), $($args)*);
        $($callback)::+!(postgres, $crate::common::TestDb::postgres(), $($args)*);
        $($callback)::+!(mysql, $crate::common::TestDb::mysql(), $($args)*);
    };
}
pub(crate) use for_each_backend;

/// A test written once and run on every backend of [`for_each_backend!`]: the function as
/// written, and beside it a module of the same name with one test per backend
/// (`name::sqlite`, `name::postgres`, …) that calls it with a fresh database of its own. The
/// signature says how it is called:
///
/// ```ignore
/// backend_test!(
///     /// Doc comments and attributes stay on the function.
///     fn by_reference(db: &TestDb) { … }
/// );
/// backend_test!(
///     fn owned(db: TestDb) { … }
/// );
/// backend_test!(
///     async fn in_an_actix_system(db: TestDb) { … } // under `#[actix_rt::test]`
/// );
/// ```
///
/// One invocation may hold several functions. Parentheses rather than braces, so that
/// `cargo fmt` formats the functions too.
macro_rules! backend_test {
    () => {};
    ($(#[$attr:meta])* fn $name:ident($db:ident: &$ty:ty) $body:block $($rest:tt)*) => {
        $(#[$attr])*
        fn $name($db: &$ty) $body
        mod $name {
            $crate::common::for_each_backend!(crate::common::backend_case!(by_ref, $name));
        }
        $crate::common::backend_test!($($rest)*);
    };
    ($(#[$attr:meta])* fn $name:ident($db:ident: $ty:ty) $body:block $($rest:tt)*) => {
        $(#[$attr])*
        fn $name($db: $ty) $body
        mod $name {
            $crate::common::for_each_backend!(crate::common::backend_case!(owned, $name));
        }
        $crate::common::backend_test!($($rest)*);
    };
    ($(#[$attr:meta])* async fn $name:ident($db:ident: $ty:ty) $body:block $($rest:tt)*) => {
        $(#[$attr])*
        async fn $name($db: $ty) $body
        mod $name {
            $crate::common::for_each_backend!(crate::common::backend_case!(actix, $name));
        }
        $crate::common::backend_test!($($rest)*);
    };
}
pub(crate) use backend_test;

/// One backend's test of a [`backend_test!`] function, named after the backend; skipped (and
/// passing) when the backend's database is not there.
macro_rules! backend_case {
    ($backend:ident, $db:expr, by_ref, $name:ident) => {
        #[test]
        fn $backend() {
            let Some(db) = $db else { return };
            super::$name(&db);
        }
    };
    ($backend:ident, $db:expr, owned, $name:ident) => {
        #[test]
        fn $backend() {
            let Some(db) = $db else { return };
            super::$name(db);
        }
    };
    ($backend:ident, $db:expr, actix, $name:ident) => {
        #[actix_rt::test]
        async fn $backend() {
            let Some(db) = $db else { return };
            super::$name(db).await;
        }
    };
}
pub(crate) use backend_case;

/// A migrated, private database and a store connected to it. Dropping it removes the database
/// (the SQLite directory, the PostgreSQL schema or the MySQL database).
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
    #[cfg(feature = "mysql")]
    Mysql(DatabaseGuard),
}

impl TestDb {
    /// A fresh, migrated SQLite database in its own temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let url = DatabaseUrl::Sqlite(dir.path().join("solidq.sqlite3"));
        let store = Store::connect(&url, TEST_POOL_SIZE).expect("opening the SQLite database");
        store.migrate().expect("migrating the SQLite database");
        TestDb { url, store: Arc::new(store), _guard: Guard::Sqlite(dir) }
    }

    /// A fresh, migrated schema in the database named by `SOLIDQ_TEST_POSTGRES_URL`, or `None`
    /// (after saying so on stderr) when the variable is unset.
    pub fn postgres() -> Option<TestDb> {
        let Ok(base) = std::env::var(POSTGRES_URL_VAR) else {
            eprintln!("SKIPPED: {POSTGRES_URL_VAR} is not set, PostgreSQL test skipped");
            return None;
        };
        let schema = unique_schema_name();
        let mut admin =
            PgConnection::establish(&base).unwrap_or_else(|err| panic!("connecting to {POSTGRES_URL_VAR}: {err}"));
        admin.batch_execute(&format!("CREATE SCHEMA {schema}")).expect("creating the test schema");
        let guard = SchemaGuard { base, schema };
        let url = DatabaseUrl::Postgres(guard.url());
        let store = Store::connect(&url, TEST_POOL_SIZE).expect("connecting to PostgreSQL");
        store.migrate().expect("migrating the PostgreSQL schema");
        Some(TestDb { url, store: Arc::new(store), _guard: Guard::Postgres(guard) })
    }

    /// A fresh, migrated database of its own on the server named by `SOLIDQ_TEST_MYSQL_URL`, or
    /// `None` (after saying so on stderr) when the variable is unset.
    #[cfg(feature = "mysql")]
    pub fn mysql() -> Option<TestDb> {
        let Ok(base) = std::env::var(MYSQL_URL_VAR) else {
            eprintln!("SKIPPED: {MYSQL_URL_VAR} is not set, MySQL test skipped");
            return None;
        };
        // `solidq_t_<pid>_<n>_<hex>`: at most about 40 characters, MySQL allows 64.
        let name = unique_schema_name();
        let mut admin =
            MysqlConnection::establish(&base).unwrap_or_else(|err| panic!("connecting to {MYSQL_URL_VAR}: {err}"));
        admin
            .batch_execute(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
            .expect("creating the test database");
        let guard = DatabaseGuard { base, name };
        let url = DatabaseUrl::Mysql(guard.url());
        let store = Store::connect(&url, TEST_POOL_SIZE).expect("connecting to MySQL");
        store.migrate().expect("migrating the MySQL database");
        Some(TestDb { url, store: Arc::new(store), _guard: Guard::Mysql(guard) })
    }

    /// Without the `mysql` feature there is no MySQL backend to test: always `None`, and said so.
    #[cfg(not(feature = "mysql"))]
    pub fn mysql() -> Option<TestDb> {
        if std::env::var_os(MYSQL_URL_VAR).is_some() {
            eprintln!("SKIPPED: built without the `mysql` feature, MySQL test skipped");
        } else {
            eprintln!("SKIPPED: {MYSQL_URL_VAR} is not set, MySQL test skipped");
        }
        None
    }

    /// `sqlite`, `postgres` or `mysql`.
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
            _ => None,
        }
    }

    /// The MySQL URL (naming the test's own database), if this is a MySQL database.
    pub fn mysql_url(&self) -> Option<&str> {
        match &self.url {
            DatabaseUrl::Mysql(url) => Some(url),
            _ => None,
        }
    }

    /// The URL as `SOLIDQ_DATABASE_URL` takes it (for processes the test starts).
    pub fn url_text(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) | DatabaseUrl::Mysql(url) => url.clone(),
        }
    }

    /// A fresh connection to the test database, outside the store: another session, as an
    /// application or a second tool would open it (for locks held across statements).
    pub fn raw_connection(&self) -> Box<dyn SimpleConnection> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let mut conn =
                    SqliteConnection::establish(path.to_str().expect("utf-8 path")).expect("connecting to SQLite");
                conn.batch_execute("PRAGMA busy_timeout = 10000;").expect("pragma");
                Box::new(conn)
            }
            DatabaseUrl::Postgres(url) => Box::new(PgConnection::establish(url).expect("connecting to PostgreSQL")),
            #[cfg(feature = "mysql")]
            DatabaseUrl::Mysql(url) => Box::new(mysql_connection(url)),
            #[cfg(not(feature = "mysql"))]
            DatabaseUrl::Mysql(_) => unreachable!("{NO_MYSQL}"),
        }
    }

    /// Runs `sql` on a fresh connection to the test database, outside the store.
    pub fn execute_sql(&self, sql: &str) {
        self.raw_connection().batch_execute(sql).expect("executing SQL");
    }

    /// The state of job `id` as text (`ready`, …), `missing` if there is no such job, or
    /// `inconsistent` if no table holds it.
    pub fn state(&self, id: i64) -> String {
        match self.store.job(id).expect("reading a job") {
            None => "missing".into(),
            Some(row) => row.state.map_or_else(|| "inconsistent".into(), |state| state.to_string()),
        }
    }
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

/// A bare connection to a MySQL test database, as an application or another tool would open it.
#[cfg(feature = "mysql")]
pub fn mysql_connection(url: &str) -> MysqlConnection {
    MysqlConnection::establish(url).expect("connecting to MySQL")
}

/// Why a `DatabaseUrl::Mysql` arm cannot be reached in a build without the `mysql` feature:
/// [`TestDb::mysql`] is always `None` there. (The variant exists in every build.)
pub const NO_MYSQL: &str = "no MySQL test database without the `mysql` feature";

/// Drops its database, with everything in it, when dropped.
#[cfg(feature = "mysql")]
struct DatabaseGuard {
    /// The URL `SOLIDQ_TEST_MYSQL_URL` gave.
    base: String,
    name: String,
}

#[cfg(feature = "mysql")]
impl DatabaseGuard {
    /// The base URL with its database (the path) replaced by this one; the query is kept.
    fn url(&self) -> String {
        with_database(&self.base, &self.name)
    }
}

#[cfg(feature = "mysql")]
impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        if let Ok(mut conn) = MysqlConnection::establish(&self.base) {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS `{}`", self.name));
        }
    }
}

/// `url` (`scheme://authority[/database][?query]`) naming `database` instead of its own.
pub fn with_database(url: &str, database: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |at| at + 3);
    let (without_query, query) = match url.find('?') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let authority_end = without_query[after_scheme..].find('/').map_or(without_query.len(), |at| after_scheme + at);
    format!("{}/{database}{query}", &without_query[..authority_end])
}

/// Waits (in an actix System) until `done`, failing the test after `timeout`; returns how long
/// it took.
pub async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Waits (blocking the thread) until `done`, failing the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to a child process the test started.
pub fn send(child: &std::process::Child, signal: libc::c_int) {
    // SAFETY: kill(2) on a child we spawned.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
}

/// Waits for a child process to exit, killing it and failing the test after `timeout`.
pub fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("child did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
