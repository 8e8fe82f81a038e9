//! Storage: the only code that writes SQL.
//!
//! One [`Store`] serves every backend. Its methods are split by role, one file each:
//! - [`jobs`]: enqueue, claim, and the transitions of claimed jobs (complete, retry, snooze,
//!   fail, release), each on a batch of claim tokens, reporting which tokens were fenced;
//! - [`processes`]: register, beat, session liveness, deregister;
//! - [`maintenance`]: dispatch due jobs, reap dead processes, release orphaned claims, settle
//!   lost claims; each one transaction returning counts;
//! - [`inspect`]: the reads that status views, the CLI and a dashboard need;
//! - [`views`] and [`bulk`]: the dashboard's reads, bounded on big tables, and its bulk
//!   actions on what a page showed;
//! - [`leadership`]: the leader lock and the elected term that fences a leader's sweeps;
//! - [`recurring`]: recurring tasks (static and dynamic) and the record of their runs, which
//!   makes many schedulers enqueue each run once.
//!
//! They are written once against [`DbConnection`] (diesel's `MultiConnection` over SQLite and
//! PostgreSQL); what differs between backends (SKIP LOCKED, RETURNING, IMMEDIATE transactions,
//! advisory locks, deadlock retries) is a dialect (`store/dialect`, crate-private). Every method is blocking:
//! actors call them from a blocking pool, never on an event loop. Every method that depends on
//! the time takes `now`, so tests choose it.
//!
//! A job's state is which execution table holds it (as in Solid Queue): ready, scheduled,
//! claimed, failed, or none with `finished_at` set.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use diesel::QueryResult;

use crate::model::DatabaseUrl;

pub mod bulk;
pub mod changes;
pub mod composition;
pub(crate) mod concurrency;
pub mod connection;
pub(crate) mod dialect;
mod error;
pub(crate) mod executions;
pub mod inspect;
pub mod jobs;
pub mod leadership;
pub mod maintenance;
pub mod manage;
pub mod metrics;
mod observer;
pub(crate) mod params;
pub mod processes;
pub(crate) mod rate_limits;
pub mod recurring;
pub(crate) mod schema;
pub(crate) mod sql_types;
pub mod views;

pub use bulk::{ActionOutcome, JobSelection};
pub use connection::DbConnection;
pub use error::{StoreError, StoreResult};
pub use inspect::{JobCounts, JobFilter, JobRow, QueueCounts, Waiting};
pub use jobs::{EnqueueConnection, Settled};
pub use leadership::{Candidacy, Leader, Leadership, Lease};
pub use maintenance::{DeathCause, Dispatched, ReapedProcess};
pub use manage::{ActionError, QueueRow};
pub use metrics::{MetricGauges, ProcessGauge, QueueGauge};
pub use observer::{Observer, StoreEvent};
pub use processes::Beat;
pub use rate_limits::{RateLimitUsage, RATE_LIMIT_KEYS_SHOWN};
pub use recurring::{DueRun, RecurringRun, RecurringTaskRow, Removed, StaticTasksSynced};
pub use views::{Count, JobCursor, JobPage, JobQuery};

use connection::DbPool;
use dialect::Dialect;

/// How often a transaction that failed with a retryable error (a deadlock, a serialization
/// failure) is run again before the error is returned.
pub const MAX_TRANSACTION_RETRIES: usize = 3;

/// The store: a dialect and its pools. Cheap to share behind an `Arc` ([`SharedStore`]).
pub struct Store {
    dialect: Box<dyn Dialect>,
    /// Where writes go: the one writer connection on SQLite, the pool on PostgreSQL.
    writer: DbPool,
    /// Where reads go.
    reader: DbPool,
    observer: Option<Arc<dyn Observer>>,
    /// Jobs claimed through this store since the queue tables were last tidied.
    claimed_since_tidy: AtomicUsize,
    /// Told, in this process, when this store made jobs ready (see [`Store::on_jobs_ready`]).
    ready_wakers: Mutex<Vec<Weak<dyn Fn() + Send + Sync>>>,
    /// Whether the last claim through this store found nothing: the next one looks first.
    last_claim_empty: std::sync::atomic::AtomicBool,
    /// What this store knows of changes to the database (see [`changes`]).
    changes: Arc<changes::Changes>,
    /// When the jobs this store deferred for their rate limits are planned to be due.
    rate_wakes: Mutex<std::collections::BTreeSet<chrono::NaiveDateTime>>,
}

/// Jobs claimed through one store between two tidies of the queue tables ([`Store::tidy`]).
pub const TIDY_AFTER_CLAIMS: usize = 50_000;

/// A shared store.
pub type SharedStore = Arc<Store>;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

/// Connects to `url` with pools of `pool_size` connections, choosing the backend from the URL's
/// scheme (never by trial). Does not migrate.
pub fn connect(url: &DatabaseUrl, pool_size: u32) -> StoreResult<SharedStore> {
    Ok(Arc::new(Store::connect(url, pool_size)?))
}

impl Store {
    /// Connects to `url` with pools of `pool_size` connections. Does not migrate.
    pub fn connect(url: &DatabaseUrl, pool_size: u32) -> StoreResult<Store> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                let (file, writer, reader) = connection::sqlite_pools(path, pool_size)?;
                Ok(Store::over(Box::new(dialect::sqlite::Sqlite::opened(file)), writer, reader))
            }
            DatabaseUrl::Postgres(url) => {
                let url = connection::with_connect_timeout(url);
                let manager = connection::Manager::Postgres(url.clone());
                let pool =
                    connection::pool(manager, pool_size, connection::PG_POOL_TIMEOUT, "connecting to PostgreSQL")?;
                Ok(Store::over(Box::new(dialect::postgres::Postgres::new(url)), pool.clone(), pool))
            }
            #[cfg(feature = "mysql")]
            DatabaseUrl::Mysql(url) => {
                let manager = connection::Manager::Mysql(url.clone());
                let pool = connection::pool(manager, pool_size, connection::MYSQL_POOL_TIMEOUT, "connecting to MySQL")?;
                Ok(Store::over(Box::new(dialect::mysql::Mysql::new(url.clone())), pool.clone(), pool))
            }
            #[cfg(not(feature = "mysql"))]
            DatabaseUrl::Mysql(_) => Err(connection::mysql_not_built("connecting to MySQL")),
        }
    }

    /// A store over a new in-memory SQLite database, migrated: no file, gone when the store
    /// is dropped. Every store this returns has a database of its own (SQLite's memdb VFS,
    /// `file:/solidq-<unique>?vfs=memdb`, which all the store's pooled connections share). For
    /// tests: see [`crate::testing`].
    pub fn in_memory() -> StoreResult<Store> {
        let (_uri, writer, reader) = connection::sqlite_memory_pools(4)?;
        let store = Store::over(Box::new(dialect::sqlite::Sqlite::sql_only()), writer, reader);
        store.migrate()?;
        Ok(store)
    }

    /// A store over `dialect` writing through `writer` and reading through `reader` (one pool
    /// on the server backends, two on SQLite).
    fn over(dialect: Box<dyn Dialect>, writer: DbPool, reader: DbPool) -> Store {
        Store {
            dialect,
            writer,
            reader,
            observer: None,
            claimed_since_tidy: AtomicUsize::new(0),
            ready_wakers: Mutex::default(),
            last_claim_empty: Default::default(),
            changes: Arc::default(),
            rate_wakes: Mutex::default(),
        }
    }

    /// Calls `wake` whenever this store (any clone of its `Arc`) has committed jobs that are
    /// ready now: an enqueue, a dispatch of due jobs, a retry or release, a reap. The workers
    /// of a runtime sharing the store claim at once instead of at their next poll. Holds
    /// `wake` weakly: dropping it unsubscribes. `wake` runs on the thread that wrote; it must
    /// not block.
    pub fn on_jobs_ready(&self, wake: &Arc<dyn Fn() + Send + Sync>) {
        let mut wakers = self.ready_wakers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        wakers.retain(|waker| waker.strong_count() > 0);
        wakers.push(Arc::downgrade(wake));
    }

    /// Tidies the queue tables once this store has claimed [`TIDY_AFTER_CLAIMS`] jobs since
    /// the last time (PostgreSQL: a vacuum of the ready and claimed tables, so that claims do
    /// not slow down with the rows earlier claims deleted, whatever autovacuum does); returns
    /// whether it ran. The dispatcher calls it on each pass.
    pub fn tidy(&self) -> StoreResult<bool> {
        if self.claimed_since_tidy.load(Ordering::Relaxed) < TIDY_AFTER_CLAIMS {
            return Ok(false);
        }
        self.claimed_since_tidy.store(0, Ordering::Relaxed);
        self.with_connection("tidying the queue tables", |conn| self.dialect.tidy(conn))
    }

    pub(crate) fn count_claimed(&self, jobs: usize) {
        self.claimed_since_tidy.fetch_add(jobs, Ordering::Relaxed);
    }

    /// Tells the subscribers of [`Store::on_jobs_ready`].
    pub(crate) fn jobs_ready(&self) {
        let wakers: Vec<_> = {
            let wakers = self.ready_wakers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            wakers.iter().filter_map(Weak::upgrade).collect()
        };
        wakers.iter().for_each(|wake| wake());
    }

    /// Runs, until `stop` is set, a loop that calls `wake` when another process may have
    /// made jobs ready (PostgreSQL: LISTEN on the schema's channel, with reconnects; SQLite:
    /// `PRAGMA data_version` every [`changes::WATCH_INTERVAL`], which also lets maintenance
    /// skip reads while nothing changed); `None` when the backend cannot tell. The caller runs
    /// it on its own thread.
    pub fn ready_listener(&self) -> Option<dialect::ReadyListener> {
        self.dialect.ready_listener(dialect::ListenerContext {
            writer: self.writer.clone(),
            changes: self.changes.clone(),
            observer: self.observer.clone(),
        })
    }

    /// Where the database is in its history as this store sees it, and when that was last
    /// confirmed, while the store can tell (see [`changes`]); `None` on backends without a
    /// watcher, or while it does not look.
    pub(crate) fn change_mark(&self) -> Option<(changes::ChangeMark, Instant)> {
        self.changes.mark()
    }

    /// The same store, reporting every operation to `observer`.
    pub fn observed_by(mut self, observer: Arc<dyn Observer>) -> Store {
        self.observer = Some(observer);
        self
    }

    /// `sqlite`, `postgres` or `mysql`.
    pub fn backend(&self) -> &'static str {
        self.dialect.name()
    }

    /// Applies pending embedded migrations; returns how many ran. Safe to run from several
    /// processes at once.
    pub fn migrate(&self) -> StoreResult<usize> {
        let mut conn = self.writer.get().map_err(StoreError::connection("migrating the database"))?;
        self.dialect.migrate(&mut conn).map_err(StoreError::Migration)
    }

    pub(crate) fn dialect(&self) -> &dyn Dialect {
        self.dialect.as_ref()
    }

    /// Checks that the database is still where the URL points (SQLite: the path still names
    /// the file this store opened, by device and inode). Once it is not, every write fails
    /// with [`StoreError::DatabaseGone`]; the heartbeat checks on every beat and `enqueue` on
    /// every call.
    pub fn check_database(&self) -> StoreResult<()> {
        self.dialect.check_database().map_err(StoreError::DatabaseGone)
    }

    /// Runs `f` in a write transaction, again if it fails with a retryable error.
    pub(crate) fn write<T>(
        &self,
        action: &'static str,
        f: impl FnMut(&mut DbConnection) -> QueryResult<T>,
    ) -> StoreResult<T> {
        self.write_as(action, true, f)
    }

    /// Runs `f` as [`Store::write`] does, in a transaction only with `transaction`: without,
    /// `f` must be one statement (atomic by itself).
    pub(crate) fn write_as<T>(
        &self,
        action: &'static str,
        transaction: bool,
        f: impl FnMut(&mut DbConnection) -> QueryResult<T>,
    ) -> StoreResult<T> {
        let result = self.write_unmarked(action, transaction, f);
        // Committed or perhaps committed (a lost answer): either way maintenance looks again.
        self.changes.wrote();
        result
    }

    /// Runs `f` as [`Store::write_as`] does, for writes that change nothing a maintenance
    /// pass reads (the scheduled jobs, the process rows): they leave the
    /// [`changes::ChangeMark`] as it was.
    pub(crate) fn write_unmarked<T>(
        &self,
        action: &'static str,
        transaction: bool,
        mut f: impl FnMut(&mut DbConnection) -> QueryResult<T>,
    ) -> StoreResult<T> {
        if let Some(gone) = self.dialect.database_gone() {
            return Err(StoreError::DatabaseGone(gone));
        }
        // Inside `as_leader`: every write checks the term in its transaction.
        let fence = leadership::fence();
        let mut fenced = |conn: &mut DbConnection| {
            if let Some(term) = fence {
                leadership::check_fence(self, conn, term)?;
            }
            f(conn)
        };
        self.observed(action, || {
            let mut conn = self.writer.get().map_err(StoreError::connection(action))?;
            let mut retries = 0;
            loop {
                let result = if transaction || fence.is_some() {
                    connection::in_transaction(&mut conn, |conn| self.dialect.begin_write(conn), &mut fenced)
                } else {
                    fenced(&mut conn)
                };
                if let Some(term) = result.as_ref().err().and_then(leadership::deposed) {
                    return Err(StoreError::Deposed { term });
                }
                match result {
                    Err(err) if retries < MAX_TRANSACTION_RETRIES && self.dialect.retryable(&err) => {
                        // The transaction was rolled back; a pause lets the other side of a
                        // deadlock finish first.
                        std::thread::sleep(self.dialect.retry_pause(retries));
                        retries += 1;
                    }
                    Err(err) => {
                        connection::discard_after_error(&mut conn);
                        // A commit refused because the SQLite file went away: say so.
                        self.check_database()?;
                        return Err(StoreError::query(action)(err));
                    }
                    Ok(value) => return Ok(value),
                }
            }
        })
    }

    /// Runs `f` in a read-only transaction that sees one snapshot.
    pub(crate) fn read<T>(
        &self,
        action: &'static str,
        mut f: impl FnMut(&mut DbConnection) -> QueryResult<T>,
    ) -> StoreResult<T> {
        self.observed(action, || {
            let mut conn = self.reader.get().map_err(StoreError::connection(action))?;
            connection::in_transaction(&mut conn, |conn| self.dialect.begin_read(conn), &mut f).map_err(|err| {
                connection::discard_after_error(&mut conn);
                StoreError::query(action)(err)
            })
        })
    }

    /// Runs `f` on a pooled connection outside any transaction.
    pub(crate) fn with_connection<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&mut DbConnection) -> QueryResult<T>,
    ) -> StoreResult<T> {
        self.observed(action, || {
            let mut conn = self.reader.get().map_err(StoreError::connection(action))?;
            f(&mut conn).map_err(|err| {
                connection::discard_after_error(&mut conn);
                StoreError::query(action)(err)
            })
        })
    }

    /// Runs `f` and reports it to the observer.
    pub(crate) fn observed<T>(&self, operation: &'static str, f: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
        let Some(observer) = &self.observer else { return f() };
        let started = Instant::now();
        let result = f();
        observer.finished(&StoreEvent { operation, elapsed: started.elapsed(), ok: result.is_ok() });
        result
    }
}
