//! Connections: one diesel connection type for every backend (`DbConnection`, a
//! `MultiConnection`), opened for the backend that the URL's scheme names (never by trial), and
//! the r2d2 pools built on it. The settings an application needs for its own connections to the
//! same database (the SQLite pragmas and busy timeout, libpq's connect timeout) are public.

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ManageConnection, Pool, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};

use super::{StoreError, StoreResult};

pub(crate) use multi::DbConnection;

// The derive generates undocumented items (its backend and query builder types).
#[allow(missing_docs)]
mod multi {
    use diesel::{PgConnection, SqliteConnection};

    /// A connection to any supported backend. Code written once against it runs on every
    /// backend; what differs goes through the [dialect](crate::store::dialect), which matches
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

/// How long SQLite waits for a lock held by another connection or process.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a pooled SQLite connection.
pub const SQLITE_POOL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a pooled PostgreSQL connection: an outage returns an error
/// after this, it does not hang.
pub const PG_POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// libpq's `connect_timeout` (seconds) added to PostgreSQL URLs that do not set one.
pub const PG_CONNECT_TIMEOUT_SECS: u32 = 5;

/// Opens connections of one backend for a pool.
#[derive(Debug, Clone)]
pub(crate) enum Manager {
    /// SQLite file at this path; every connection gets [`sqlite_pragmas`].
    Sqlite(String),
    /// PostgreSQL at this URL (with `connect_timeout`).
    Postgres(String),
}

impl Manager {
    /// Opens one connection.
    pub(crate) fn open(&self) -> Result<DbConnection, diesel::r2d2::Error> {
        match self {
            Manager::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path).map_err(diesel::r2d2::Error::ConnectionError)?;
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

/// A pool of `size` connections opened by `manager`, waiting at most `timeout` for one.
pub(crate) fn pool(manager: Manager, size: u32, timeout: Duration, action: &'static str) -> StoreResult<DbPool> {
    Pool::builder()
        .max_size(size.max(1))
        .connection_timeout(timeout)
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
    let location = path.to_str().ok_or_else(|| StoreError::Connection {
        action,
        message: format!("path {} is not valid UTF-8", path.display()),
    })?;
    // The writer first: it switches a new file to WAL before readers open it.
    let writer = pool(Manager::Sqlite(location.to_string()), 1, SQLITE_POOL_TIMEOUT, action)?;
    let reader = pool(Manager::Sqlite(location.to_string()), pool_size, SQLITE_POOL_TIMEOUT, action)?;
    Ok((writer, reader))
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
