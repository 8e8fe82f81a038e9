//! Connections: one diesel connection type for every backend ([`DbConnection`], a
//! `MultiConnection`), opened for the backend that the URL's scheme names (never by trial), and
//! the r2d2 pools built on it.
//!
//! An application uses the same for its own tables ([`app_pool`], [`write_transaction`]): its
//! connections are set up as solidq's (SQLite: WAL, a busy timeout so that a write waits for
//! solidq's workers instead of failing with `database is locked`, foreign keys; PostgreSQL: a
//! connect timeout; MySQL: READ COMMITTED and a lock wait timeout), its diesel code is written once for every backend against
//! [`DbConnection`], and [`Queue::enqueue_in`](crate::Queue::enqueue_in) takes the same
//! connection inside the application's transaction:
//!
//! ```no_run
//! use diesel::prelude::*;
//! use solidq::store::connection::{app_pool, write_transaction};
//! use solidq::{DatabaseUrl, EnqueueOptions, NewJob, Queue};
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Welcome { user: i64 }
//! # impl solidq::Job for Welcome { const KIND: &'static str = "welcome"; }
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = app_pool(&DatabaseUrl::parse("sqlite://app.sqlite3")?, 4)?;
//! // Refused at once, naming the path, if the SQLite file was deleted under the process.
//! let mut conn = pool.get()?;
//! // BEGIN IMMEDIATE on SQLite: the transaction takes the write lock up front.
//! write_transaction(&mut conn, |conn| {
//!     diesel::sql_query("INSERT INTO users (id) VALUES (7)").execute(conn)?;
//!     Queue::enqueue_in(conn, &Welcome { user: 7 }, EnqueueOptions::new())?;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(()) }
//! ```
//!
//! On SQLite every connection opened here refuses to commit once its file was deleted or
//! replaced at its path (see [`SqliteFile`]): what it wrote would vanish with the unlinked
//! file, although the commit succeeded.

use std::time::Duration;

use diesel::r2d2::{ManageConnection, Pool, PooledConnection, R2D2Connection};
#[cfg(feature = "mysql")]
use diesel::MysqlConnection;
use diesel::{Connection, PgConnection};

use super::error::{StoreError, StoreResult};
use crate::model::DatabaseUrl;

mod sqlite_file;

pub use multi::DbConnection;
pub(crate) use multi::MultiBackend;
pub use sqlite_file::SqliteFile;
pub(crate) use sqlite_file::{moved as sqlite_moved, refuse_writes_if_moved};

// The derive generates undocumented items (its backend and query builder types).
#[allow(missing_docs)]
mod multi {
    #[cfg(feature = "mysql")]
    use diesel::MysqlConnection;
    use diesel::{PgConnection, SqliteConnection};

    /// A connection to any supported backend. Code written once against it runs on every
    /// backend; what differs goes through the dialect (`store/dialect`), which matches
    /// on the variant.
    #[derive(diesel::MultiConnection)]
    pub enum DbConnection {
        /// A PostgreSQL connection.
        Postgres(PgConnection),
        /// A SQLite connection.
        Sqlite(SqliteConnection),
        /// A MySQL or MariaDB connection (the `mysql` cargo feature), set up by
        /// `open_mysql`.
        #[cfg(feature = "mysql")]
        Mysql(MysqlConnection),
    }
}

/// A pool of connections to one database.
pub(crate) type DbPool = Pool<Manager>;

/// How long SQLite waits for a lock held by another connection or process.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a pooled SQLite connection.
pub const SQLITE_POOL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a pooled PostgreSQL connection: an outage returns an error
/// after this, it does not hang.
pub const PG_POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// libpq's `connect_timeout` (seconds) added to PostgreSQL URLs that do not set one.
pub const PG_CONNECT_TIMEOUT_SECS: u32 = 5;
/// How long a caller waits for a pooled MySQL connection. diesel's MySQL URL has no connect
/// timeout: a refused or reset connection fails at once, but one to a host that drops packets
/// waits for TCP's own timeout in the pool's connector thread; callers still get an error
/// after this.
pub const MYSQL_POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Run on every MySQL connection opened by `open_mysql`. READ COMMITTED: under REPEATABLE
/// READ, a claim's `FOR UPDATE SKIP LOCKED` that reaches the end of an index takes gap locks
/// that block concurrent enqueues until it commits. A short lock wait timeout turns a stuck
/// row lock into a retryable error (1205) instead of a 50-second stall. diesel itself sets the
/// time zone to UTC and the character set to utf8mb4.
pub const MYSQL_SESSION_SETUP: &str =
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; SET SESSION innodb_lock_wait_timeout = 5";

/// Opens connections of one backend for a pool (see [`app_pool`]).
#[derive(Debug, Clone)]
pub enum Manager {
    /// This SQLite file; every connection gets [`sqlite_pragmas`] and the guard of
    /// [`SqliteFile`].
    Sqlite(SqliteFile),
    /// PostgreSQL at this URL (with `connect_timeout`).
    Postgres(String),
    /// MySQL or MariaDB at this URL; every connection gets [`MYSQL_SESSION_SETUP`].
    #[cfg(feature = "mysql")]
    Mysql(String),
    /// An in-memory SQLite database shared by every connection of the process that opens
    /// this URI (`file:/name?vfs=memdb`, see [`Store::in_memory`](crate::Store::in_memory)); each connection gets
    /// [`sqlite_memory_pragmas`].
    SqliteMemory(String),
}

impl Manager {
    /// Opens one connection.
    pub fn open(&self) -> Result<DbConnection, diesel::r2d2::Error> {
        match self {
            Manager::Sqlite(file) => file.open(&sqlite_pragmas()).map(DbConnection::Sqlite).map_err(|message| {
                diesel::r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(message))
            }),
            Manager::SqliteMemory(uri) => diesel::SqliteConnection::establish(uri)
                .and_then(|mut conn| {
                    use diesel::connection::SimpleConnection;
                    conn.batch_execute(&sqlite_memory_pragmas())
                        .map_err(|err| diesel::ConnectionError::BadConnection(format!("setting up {uri}: {err}")))?;
                    Ok(conn)
                })
                .map(DbConnection::Sqlite)
                .map_err(diesel::r2d2::Error::ConnectionError),
            Manager::Postgres(url) => {
                init_tls();
                PgConnection::establish(url).map(DbConnection::Postgres).map_err(diesel::r2d2::Error::ConnectionError)
            }
            #[cfg(feature = "mysql")]
            Manager::Mysql(url) => {
                open_mysql(url).map(DbConnection::Mysql).map_err(diesel::r2d2::Error::ConnectionError)
            }
        }
    }
}

/// A MySQL or MariaDB connection to `url`, with [`MYSQL_SESSION_SETUP`] applied. Every MySQL
/// connection solidq opens comes from here: pooled ones, the dedicated session and migration
/// connections of the dialect.
#[cfg(feature = "mysql")]
pub(crate) fn open_mysql(url: &str) -> diesel::ConnectionResult<MysqlConnection> {
    use diesel::connection::SimpleConnection;
    let mut conn = MysqlConnection::establish(url)?;
    conn.batch_execute(MYSQL_SESSION_SETUP)
        .map_err(|err| diesel::ConnectionError::BadConnection(format!("setting up the MySQL session: {err}")))?;
    Ok(conn)
}

/// The error for a `mysql://` URL in a build without the `mysql` cargo feature.
#[cfg(not(feature = "mysql"))]
pub(crate) fn mysql_not_built(action: &'static str) -> StoreError {
    StoreError::Connection { action, message: "solidq was built without the `mysql` cargo feature".to_string() }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        self.open()
    }

    /// SQLite: the file is still at its path (this is also a round trip); PostgreSQL: a ping.
    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        if let DbConnection::Sqlite(sqlite) = conn {
            if let Some(reason) = sqlite_moved(sqlite) {
                return Err(diesel::r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(reason)));
            }
        }
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// The pragmas applied to each SQLite connection: busy timeout first (changing the journal
/// mode may need to wait for a lock), WAL, NORMAL sync (durable in WAL up to a power loss),
/// foreign keys (for ON DELETE CASCADE), and case-sensitive LIKE so that queue prefixes match
/// as on PostgreSQL.
pub fn sqlite_pragmas() -> String {
    format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = ON;",
        SQLITE_BUSY_TIMEOUT.as_millis()
    )
}

/// The pragmas of an in-memory SQLite connection: those of [`sqlite_pragmas`] but WAL and
/// the sync mode (the memdb VFS keeps a rollback journal in memory).
pub fn sqlite_memory_pragmas() -> String {
    format!(
        "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = ON;",
        SQLITE_BUSY_TIMEOUT.as_millis()
    )
}

/// Initialises OpenSSL (once per process) before libpq first does, without the cleanup that
/// OpenSSL otherwise registers with `atexit`: that cleanup frees per-thread state while other
/// threads may still be inside libpq or OpenSSL (r2d2's connection threads, a second SIGTERM's
/// immediate exit), which crashed processes at exit with SIGSEGV in libcrypto. The process
/// frees everything at exit anyway. It has no effect if something in the process started
/// OpenSSL earlier; the runtime also joins its own threads before `run()` or `shutdown()`
/// return.
pub(crate) fn init_tls() {
    openssl_sys::init();
}

/// A pool of the store's own: `size` connections opened by `manager`, waiting at most
/// `timeout` for one. No `SELECT 1` before every use (a round trip per transaction): the store
/// drops a connection that failed instead (see [`discard_after_error`]).
pub(crate) fn pool(manager: Manager, size: u32, timeout: Duration, action: &'static str) -> StoreResult<DbPool> {
    build_pool(manager, size, timeout, false, action)
}

fn build_pool(
    manager: Manager,
    size: u32,
    timeout: Duration,
    test_on_check_out: bool,
    action: &'static str,
) -> StoreResult<DbPool> {
    // A SQLite connection is a file handle: nothing goes stale, and the writer's connection
    // keeps the `data_version` its watcher compares (see `store::changes`).
    // An in-memory database lives while one of its connections is open.
    let lasting = matches!(manager, Manager::Sqlite(_) | Manager::SqliteMemory(_));
    // A server connection costs the server a backend: open them as work needs them and close
    // the extra ones after a while idle (r2d2's default idle timeout, 10 min), so that an idle
    // process holds one, not a pool's worth (a fleet of 100 processes on one server).
    let builder =
        if lasting { Pool::builder().idle_timeout(None).max_lifetime(None) } else { Pool::builder().min_idle(Some(1)) };
    builder
        .max_size(size.max(1))
        .connection_timeout(timeout)
        .test_on_check_out(test_on_check_out)
        // The store's callers log failures with backoff; r2d2 would log every attempt.
        .error_handler(Box::new(diesel::r2d2::NopErrorHandler))
        .build(manager)
        .map_err(StoreError::connection(action))
}

/// The SQLite writer pool (one connection: every write goes through it, in IMMEDIATE
/// transactions) and a reader pool of `pool_size` connections for `path`, creating the parent
/// directory if missing; and the file they opened.
pub(crate) fn sqlite_pools(path: &std::path::Path, pool_size: u32) -> StoreResult<(SqliteFile, DbPool, DbPool)> {
    let action = "opening the SQLite database";
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| StoreError::Connection {
            action,
            message: format!("cannot create directory {}: {err}", dir.display()),
        })?;
    }
    let file = opened_sqlite_file(path, action)?;
    let writer = pool(Manager::Sqlite(file.clone()), 1, SQLITE_POOL_TIMEOUT, action)?;
    let reader = pool(Manager::Sqlite(file.clone()), pool_size, SQLITE_POOL_TIMEOUT, action)?;
    Ok((file, writer, reader))
}

/// The pools of a new in-memory SQLite database (SQLite's memdb VFS, no file): a writer of
/// one connection and a reader of `pool_size`, all on one database because they open the
/// same URI `file:/solidq-<unique>?vfs=memdb`. The database lives as long as the pools (their
/// connections are never closed for idleness); the URI is returned with them.
pub(crate) fn sqlite_memory_pools(pool_size: u32) -> StoreResult<(String, DbPool, DbPool)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let action = "opening an in-memory SQLite database";
    let uri = format!(
        "file:/solidq-{}-{}-{}?vfs=memdb",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        fastrand::u64(..)
    );
    let writer = pool(Manager::SqliteMemory(uri.clone()), 1, SQLITE_POOL_TIMEOUT, action)?;
    let reader = pool(Manager::SqliteMemory(uri.clone()), pool_size, SQLITE_POOL_TIMEOUT, action)?;
    Ok((uri, writer, reader))
}

/// The SQLite file at `path`, with one connection opened first: a file SQLite cannot open is
/// reported at once, by name, rather than after a pool's timeout; a new file is switched to
/// WAL before the pools open it; and the file the path names is recorded.
fn opened_sqlite_file(path: &std::path::Path, action: &'static str) -> StoreResult<SqliteFile> {
    let file = SqliteFile::new(path).map_err(|message| StoreError::Connection { action, message })?;
    file.open(&sqlite_pragmas()).map_err(|message| StoreError::Connection { action, message })?;
    Ok(file)
}

/// A pool of the application's own connections, set up as solidq sets up its own (see the
/// module documentation).
#[derive(Clone)]
pub struct AppPool {
    pool: Pool<Manager>,
    /// The SQLite file the pool opens, checked before a connection is handed out.
    file: Option<SqliteFile>,
}

impl std::fmt::Debug for AppPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppPool").field("file", &self.file).finish_non_exhaustive()
    }
}

impl AppPool {
    /// A connection from the pool, waiting for one up to the pool's timeout. On SQLite,
    /// refused at once with [`StoreError::DatabaseGone`] (naming the path) once the file was
    /// deleted or replaced under the process: writes on it would be lost.
    pub fn get(&self) -> StoreResult<PooledConnection<Manager>> {
        let action = "getting a connection from the application's pool";
        let check = || self.file.as_ref().map_or(Ok(()), SqliteFile::check).map_err(StoreError::DatabaseGone);
        check()?;
        // The pool may have failed to open a connection because the file went away meanwhile.
        self.pool.get().map_err(|err| check().err().unwrap_or_else(|| StoreError::connection(action)(err)))
    }

    /// The r2d2 pool underneath (its state, other ways to get a connection).
    pub fn pool(&self) -> &Pool<Manager> {
        &self.pool
    }
}

/// A pool of `size` connections to the database at `url`, for the application's own tables,
/// set up as solidq's own (see the module documentation).
pub fn app_pool(url: &DatabaseUrl, size: u32) -> StoreResult<AppPool> {
    let action = "opening the application's pool";
    // The application's code does not tell the pool which connection failed: test each.
    match url {
        DatabaseUrl::Sqlite(path) => {
            let file = opened_sqlite_file(path, action)?;
            let pool = build_pool(Manager::Sqlite(file.clone()), size, SQLITE_POOL_TIMEOUT, true, action)?;
            Ok(AppPool { pool, file: Some(file) })
        }
        DatabaseUrl::Postgres(url) => {
            let manager = Manager::Postgres(with_connect_timeout(url));
            Ok(AppPool { pool: build_pool(manager, size, PG_POOL_TIMEOUT, true, action)?, file: None })
        }
        #[cfg(feature = "mysql")]
        DatabaseUrl::Mysql(url) => {
            let manager = Manager::Mysql(url.clone());
            Ok(AppPool { pool: build_pool(manager, size, MYSQL_POOL_TIMEOUT, true, action)?, file: None })
        }
        #[cfg(not(feature = "mysql"))]
        DatabaseUrl::Mysql(_) => Err(mysql_not_built(action)),
    }
}

/// Runs `f` in a transaction meant to write: `BEGIN IMMEDIATE` on SQLite (the write lock is
/// taken up front, waiting up to the busy timeout, so the transaction never fails half-way
/// with `database is locked`), a plain transaction on PostgreSQL and MySQL. Commits if `f` returns `Ok`,
/// rolls back otherwise.
///
/// On SQLite, a connection whose file was deleted or replaced at its path since it was opened
/// rolls back instead of committing, and the error (a diesel `DatabaseError`) names the path:
/// nothing it wrote would survive the process.
pub fn write_transaction<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let begin = |conn: &mut DbConnection| match conn {
        DbConnection::Sqlite(sqlite) => AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE"),
        other => <DbConnection as Connection>::TransactionManager::begin_transaction(other),
    };
    in_transaction(conn, begin, |conn| {
        let value = f(conn)?;
        match conn {
            DbConnection::Sqlite(sqlite) => match sqlite_moved(sqlite) {
                Some(reason) => Err(database_moved_error(reason).into()),
                None => Ok(value),
            },
            _ => Ok(value),
        }
    })
}

/// A diesel error that carries why the database file is no longer where it was opened.
pub(crate) fn database_moved_error(reason: String) -> diesel::result::Error {
    diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::Unknown, Box::new(reason))
}

/// Runs `f` between `begin` and a commit (a rollback if it fails), as diesel's
/// `Connection::transaction` does, but with the caller's way to begin.
pub(crate) fn in_transaction<T, E>(
    conn: &mut DbConnection,
    begin: impl FnOnce(&mut DbConnection) -> diesel::QueryResult<()>,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::connection::TransactionManager;
    type Manager = <DbConnection as Connection>::TransactionManager;
    begin(conn)?;
    match f(conn) {
        Ok(value) => {
            Manager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(err) => match Manager::rollback_transaction(conn) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(err),
            Err(rollback) => Err(rollback.into()),
        },
    }
}

/// Makes the pool drop `conn` when it is returned, after a failed operation on PostgreSQL or
/// MySQL: the error may have been the connection itself (the server restarted, a network cut),
/// and a pool that does not test connections on check-out would hand the dead one out again.
/// Reconnecting costs a few milliseconds, and errors are rare. A SQLite connection is a file
/// handle that stays good.
pub(crate) fn discard_after_error(conn: &mut DbConnection) {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    match conn {
        DbConnection::Postgres(pg) => AnsiTransactionManager::transaction_manager_status_mut(pg).set_in_error(),
        #[cfg(feature = "mysql")]
        DbConnection::Mysql(mysql) => AnsiTransactionManager::transaction_manager_status_mut(mysql).set_in_error(),
        DbConnection::Sqlite(_) => {}
    }
}

/// `url` with libpq's `connect_timeout` set, unless it sets one already, so that establishing
/// a connection during an outage fails instead of hanging.
pub fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        return url.to_string();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}connect_timeout={PG_CONNECT_TIMEOUT_SECS}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_timeout_is_added_once_with_the_right_separator() {
        assert_eq!(with_connect_timeout("postgres://h/db"), "postgres://h/db?connect_timeout=5");
        assert_eq!(
            with_connect_timeout("postgres://h/db?options=-csearch_path%3Dx"),
            "postgres://h/db?options=-csearch_path%3Dx&connect_timeout=5"
        );
        assert_eq!(with_connect_timeout("postgres://h/db?connect_timeout=1"), "postgres://h/db?connect_timeout=1");
    }
}
