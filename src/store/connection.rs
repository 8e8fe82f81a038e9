//! Connections: one diesel connection type for every backend ([`DbConnection`], a
//! `MultiConnection`), opened for the backend that the URL's scheme names (never by trial), and
//! the r2d2 pools built on it.
//!
//! An application uses the same for its own tables ([`app_pool`], [`write_transaction`]): its
//! connections are set up as solidq's (SQLite: WAL, a busy timeout so that a write waits for
//! solidq's workers instead of failing with `database is locked`, foreign keys; PostgreSQL: a
//! connect timeout), its diesel code is written once for every backend against
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
//! let mut conn = pool.get()?;
//! // BEGIN IMMEDIATE on SQLite: the transaction takes the write lock up front.
//! write_transaction(&mut conn, |conn| {
//!     diesel::sql_query("INSERT INTO users (id) VALUES (7)").execute(conn)?;
//!     Queue::enqueue_in(conn, &Welcome { user: 7 }, EnqueueOptions::new())?;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ManageConnection, Pool, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};

use super::{StoreError, StoreResult};
use crate::model::DatabaseUrl;

pub use multi::DbConnection;

// The derive generates undocumented items (its backend and query builder types).
#[allow(missing_docs)]
mod multi {
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
    }
}

/// A pool of connections to one database.
pub(crate) type DbPool = Pool<Manager>;

/// A pool of the application's own connections, set up as solidq sets up its own.
pub type AppPool = Pool<Manager>;

/// How long SQLite waits for a lock held by another connection or process.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a pooled SQLite connection.
pub const SQLITE_POOL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a pooled PostgreSQL connection: an outage returns an error
/// after this, it does not hang.
pub const PG_POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// libpq's `connect_timeout` (seconds) added to PostgreSQL URLs that do not set one.
pub const PG_CONNECT_TIMEOUT_SECS: u32 = 5;

/// Opens connections of one backend for a pool (see [`app_pool`]).
#[derive(Debug, Clone)]
pub enum Manager {
    /// SQLite file at this path; every connection gets [`sqlite_pragmas`].
    Sqlite(String),
    /// PostgreSQL at this URL (with `connect_timeout`).
    Postgres(String),
}

impl Manager {
    /// Opens one connection.
    pub fn open(&self) -> Result<DbConnection, diesel::r2d2::Error> {
        match self {
            Manager::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path).map_err(|err| {
                    diesel::r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(explain_sqlite_open(
                        Path::new(path),
                        &err,
                    )))
                })?;
                conn.batch_execute(&sqlite_pragmas()).map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
            Manager::Postgres(url) => {
                init_tls();
                PgConnection::establish(url).map(DbConnection::Postgres).map_err(diesel::r2d2::Error::ConnectionError)
            }
        }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        self.open()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// Why SQLite could not open `path`, in words that name the file: SQLite says only "unable to
/// open database file", so ask the operating system the same question.
fn explain_sqlite_open(path: &Path, err: &diesel::ConnectionError) -> String {
    let why = if path.is_dir() {
        "it is a directory".to_string()
    } else if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty() && !dir.is_dir()) {
        format!("its directory {} does not exist", dir.display())
    } else {
        match std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path) {
            Err(io) if matches!(io.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                format!("{io}: the limit of open files is reached, see ulimit -n")
            }
            Err(io) => io.to_string(),
            Ok(_) => "the operating system can open it, SQLite cannot".to_string(),
        }
    };
    format!("cannot open the SQLite database {}: {err} ({why})", path.display())
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
    Pool::builder()
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
/// directory if missing.
pub(crate) fn sqlite_pools(path: &Path, pool_size: u32) -> StoreResult<(DbPool, DbPool)> {
    let action = "opening the SQLite database";
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| StoreError::Connection {
            action,
            message: format!("cannot create directory {}: {err}", dir.display()),
        })?;
    }
    let location = sqlite_location(path, action)?;
    // One connection first, so that a file SQLite cannot open is reported at once, by name,
    // rather than after the pool's timeout. It also switches a new file to WAL before the
    // pools open it.
    let manager = Manager::Sqlite(location.to_string());
    manager.open().map_err(|err| StoreError::Connection { action, message: err.to_string() })?;
    let writer = pool(manager, 1, SQLITE_POOL_TIMEOUT, action)?;
    let reader = pool(Manager::Sqlite(location.to_string()), pool_size, SQLITE_POOL_TIMEOUT, action)?;
    Ok((writer, reader))
}

/// The path of a SQLite file as SQLite takes it (UTF-8), or an error naming it.
fn sqlite_location<'a>(path: &'a Path, action: &'static str) -> StoreResult<&'a str> {
    path.to_str().ok_or_else(|| StoreError::Connection {
        action,
        message: format!("path {} is not valid UTF-8", path.display()),
    })
}

/// A pool of `size` connections to the database at `url`, for the application's own tables,
/// set up as solidq's own (see the module documentation).
pub fn app_pool(url: &DatabaseUrl, size: u32) -> StoreResult<AppPool> {
    let action = "opening the application's pool";
    match url {
        DatabaseUrl::Sqlite(path) => {
            let location = sqlite_location(path, action)?;
            let manager = Manager::Sqlite(location.to_string());
            manager.open().map_err(|err| StoreError::Connection { action, message: err.to_string() })?;
            build_pool(manager, size, SQLITE_POOL_TIMEOUT, true, action)
        }
        // The application's code does not tell the pool which connection failed: test each.
        DatabaseUrl::Postgres(url) => {
            build_pool(Manager::Postgres(with_connect_timeout(url)), size, PG_POOL_TIMEOUT, true, action)
        }
    }
}

/// Runs `f` in a transaction meant to write: `BEGIN IMMEDIATE` on SQLite (the write lock is
/// taken up front, waiting up to the busy timeout, so the transaction never fails half-way
/// with `database is locked`), a plain transaction on PostgreSQL. Commits if `f` returns `Ok`,
/// rolls back otherwise.
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
    in_transaction(conn, begin, f)
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

/// Makes the pool drop `conn` when it is returned, after a failed operation on PostgreSQL: the
/// error may have been the connection itself (the server restarted, a network cut), and a
/// pool that does not test connections on check-out would hand the dead one out again.
/// Reconnecting costs a few milliseconds, and errors are rare. A SQLite connection is a file
/// handle that stays good.
pub(crate) fn discard_after_error(conn: &mut DbConnection) {
    if let DbConnection::Postgres(pg) = conn {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        AnsiTransactionManager::transaction_manager_status_mut(pg).set_in_error();
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
