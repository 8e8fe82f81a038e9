//! Connection pools: one writer and a reader pool for SQLite, one pool for PostgreSQL.

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{PgConnection, SqliteConnection};

use super::{StoreError, StoreResult};

/// A pool of SQLite connections.
pub type SqlitePool = Pool<ConnectionManager<SqliteConnection>>;
/// A pool of PostgreSQL connections.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// How long SQLite waits for a lock held by another connection or process.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a pooled SQLite connection.
pub const SQLITE_POOL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a pooled PostgreSQL connection: an outage returns an error
/// after this, it does not hang.
pub const PG_POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// libpq's `connect_timeout` (seconds) added to PostgreSQL URLs that do not set one.
pub const PG_CONNECT_TIMEOUT_SECS: u32 = 5;

/// Sets the pragmas every solidq SQLite connection needs.
#[derive(Debug, Clone, Copy)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&sqlite_pragmas()).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The pragmas applied to each SQLite connection: busy timeout first (changing the journal
/// mode may need to wait for a lock), WAL, NORMAL sync (durable in WAL up to a power loss),
/// foreign keys (for ON DELETE CASCADE), and case-sensitive LIKE so that queue prefixes match
/// as on PostgreSQL.
fn sqlite_pragmas() -> String {
    format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = ON;",
        SQLITE_BUSY_TIMEOUT.as_millis()
    )
}

/// Opens the writer pool (one connection: every write goes through it, in IMMEDIATE
/// transactions) and a reader pool of `pool_size` connections for `path`, creating the parent
/// directory if missing.
pub fn sqlite_pools(path: &Path, pool_size: u32) -> StoreResult<(SqlitePool, SqlitePool)> {
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
    let build = |size: u32| {
        Pool::builder()
            .max_size(size.max(1))
            .connection_timeout(SQLITE_POOL_TIMEOUT)
            // The store's callers log failures with backoff; r2d2 would log every attempt.
            .error_handler(Box::new(diesel::r2d2::NopErrorHandler))
            .connection_customizer(Box::new(SqlitePragmas))
            .build(ConnectionManager::<SqliteConnection>::new(location))
            .map_err(StoreError::connection(action))
    };
    // The writer first: it switches a new file to WAL before readers open it.
    let writer = build(1)?;
    let reader = build(pool_size)?;
    Ok((writer, reader))
}

/// Initialises OpenSSL (once per process) before libpq first does, without the cleanup that
/// OpenSSL otherwise registers with `atexit`: that cleanup frees per-thread state while other
/// threads may still be inside libpq or OpenSSL (r2d2's connection threads, a second SIGTERM's
/// immediate exit), which crashed processes at exit with SIGSEGV in libcrypto. The process
/// frees everything at exit anyway. It has no effect if something in the process started
/// OpenSSL earlier; the runtime also joins its own threads before `run()` or `shutdown()`
/// return.
pub fn init_tls() {
    openssl_sys::init();
}

/// A pool of `pool_size` connections to `url` (which should carry `connect_timeout`, see
/// [`with_connect_timeout`]).
pub fn pg_pool(url: &str, pool_size: u32) -> StoreResult<PgPool> {
    init_tls();
    Pool::builder()
        .max_size(pool_size.max(1))
        .connection_timeout(PG_POOL_TIMEOUT)
        // The store's callers log failures with backoff; r2d2 would log every attempt.
        .error_handler(Box::new(diesel::r2d2::NopErrorHandler))
        .build(ConnectionManager::<PgConnection>::new(url))
        .map_err(StoreError::connection("connecting to PostgreSQL"))
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
