//! The dialect seam: what differs between backends, and nothing else. The store's roles
//! (`jobs`, `processes`, `maintenance`, `inspect`) are written once against [`DbConnection`];
//! they call a [`Dialect`] only where a backend needs its own SQL:
//!
//! - **Transactions**: how a write transaction begins (SQLite `BEGIN IMMEDIATE`, so that a
//!   writer never fails to upgrade a read lock; PostgreSQL `BEGIN`), and which failures mean
//!   "run the transaction again" (deadlocks, serialization failures).
//! - **How ids come back** from a multi-row insert (`enqueue`): PostgreSQL `RETURNING`;
//!   SQLite reads the newest ids under its write lock.
//! - **The claim statement**: PostgreSQL one statement with `FOR UPDATE SKIP LOCKED`; SQLite
//!   plain statements under the write lock.
//! - **Taking rows that decide a race** (`take_claims`, `take_claims_of`, `delete_process`,
//!   `take_orphan_claims`, `take_due`): the row that is deleted decides who acted, so two
//!   processes never both act on it. PostgreSQL deletes `RETURNING` (with `SKIP LOCKED` where
//!   waiting is pointless); SQLite selects and deletes under its write lock.
//! - **Session liveness** ([`SessionLiveness`]): proving that a process's database session is
//!   still open, so that its death is seen at once (PostgreSQL: a session advisory lock on a
//!   dedicated connection). SQLite has none; the pid probe and the heartbeat decide there.
//!
//! # MySQL/MariaDB (the `mysql` cargo feature)
//! - `DbConnection::Mysql(MysqlConnection)` and `dialect/mysql` implement this trait; the roles
//!   stay untouched, except the few statements written through [`on_backend!`] and
//!   [`take_ids!`].
//! - **No `RETURNING`** (MariaDB's fails through diesel, MySQL has none): the takes run
//!   `SELECT … FOR UPDATE` (`SKIP LOCKED` where the PostgreSQL dialect uses it) and then write
//!   by primary key in the same transaction (deleting by key is what kept Solid Queue's MySQL
//!   claims from deadlocking). `enqueue` reads `LAST_INSERT_ID()`, the first id of a multi-row
//!   insert: with `innodb_autoinc_lock_mode` 0 or 1 a multi-row insert gets consecutive ids;
//!   with 2 (MySQL 8's default) concurrent inserts may interleave, so it inserts one row per
//!   statement (never "selects the rows back by id range": other sessions' rows sit there).
//! - **Session liveness** through named locks: `GET_LOCK('solidq:<database hash>:<process>',
//!   0)` on the dedicated connection at registration, `IS_FREE_LOCK(…)` for the watchdog's
//!   probe.
//! - **Deadlocks to retry**: [`Dialect::retryable`] returns true for error 1213 (deadlock) and
//!   1205 (lock wait timeout); the store then runs the whole transaction again, a bounded
//!   number of times, after [`Dialect::retry_pause`]. Pooled connections run at `READ
//!   COMMITTED`, so that `SKIP LOCKED` skips rather than gap-locks.
//! - **Concurrency keys** ([`Dialect::lock_key`]): MySQL has no transaction-scoped advisory
//!   lock; a row per key in `solidq_concurrency_locks`, written `ON DUPLICATE KEY UPDATE`,
//!   serializes admissions and is released at commit as PostgreSQL's xact lock is.
//! - **Unique keys**: MySQL has no partial index, and needs none: the key is cleared when the
//!   job ends, and NULLs never collide in a plain unique index. Error 1062 on that index is
//!   retryable as PostgreSQL's unique violation is.
//! - **Times** are `DATETIME(6)`, bound as such through [`Moment`](super::sql_types::Moment)
//!   (diesel's `Timestamp` would bind as MySQL's `TIMESTAMP`, which ends in 2038).
//! - **No LISTEN/NOTIFY**: [`Dialect::ready_listener`] and [`Dialect::notify_ready`] keep
//!   their defaults, and workers poll (SQLite's `data_version` has no MySQL counterpart).

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::QueryResult;

use super::changes::Changes;
use super::connection::{DbConnection, DbPool};
use super::error::StoreResult;
use super::leadership::Candidacy;
use super::observer::Observer;
use super::params::{Claim, CompletedClaims};
use crate::model::{ClaimToken, ClaimedJob, JobId, NewJob, ProcessId};

#[cfg(feature = "mysql")]
pub mod mysql;
pub mod postgres;
mod prepared;
pub mod sqlite;

/// What is read about a process when it is reaped.
#[derive(Debug, Clone, diesel::Queryable)]
pub struct DeadProcess {
    /// Its name.
    pub name: String,
    /// Its host.
    pub hostname: String,
    /// Its OS pid.
    pub pid: i32,
    /// Its last heartbeat.
    pub last_heartbeat_at: NaiveDateTime,
}

/// A loop that runs until its flag is set and calls its function whenever another process
/// made jobs ready (see [`Dialect::ready_listener`]).
pub type ReadyListener = Box<dyn FnOnce(&dyn Fn(), &std::sync::atomic::AtomicBool) + Send>;

/// What a dialect's listener may use besides its own connection.
pub struct ListenerContext {
    /// The store's writer pool (SQLite: its one connection, whose `data_version` sees the
    /// commits of every other connection and none of its own).
    pub writer: DbPool,
    /// The store's change counts, for the commits the listener sees.
    pub changes: std::sync::Arc<Changes>,
    /// The store's observer, told of each look the listener takes.
    pub observer: Option<std::sync::Arc<dyn Observer>>,
}

/// Work on the hot path that a dialect may do in one statement (see
/// [`Dialect::one_statement`]).
#[derive(Debug, Clone, Copy)]
pub enum HotPath<'a> {
    /// [`Dialect::enqueue`] of this many jobs.
    Enqueue(usize),
    /// [`Dialect::claim`].
    Claim(&'a Claim<'a>),
    /// [`Dialect::complete_claims`].
    Complete,
}

/// The SQL of one backend, for the statements where backends differ. Every method runs inside
/// a transaction the store opened with [`Dialect::begin_write`], except where it says
/// otherwise.
pub trait Dialect: Send + Sync + 'static {
    /// `sqlite`, `postgres` or `mysql`.
    fn name(&self) -> &'static str;

    /// Begins a write transaction on `conn`.
    fn begin_write(&self, conn: &mut DbConnection) -> QueryResult<()>;

    /// Begins a read-only transaction on `conn` that sees one snapshot.
    fn begin_read(&self, conn: &mut DbConnection) -> QueryResult<()>;

    /// Whether a transaction that failed with `err` may simply be run again.
    fn retryable(&self, err: &diesel::result::Error) -> bool;

    /// How long to wait before running a transaction again after its `retry`-th retryable
    /// failure (0 for the first). None by default; a backend whose deadlocks recur when both
    /// sides retry at once waits a jittered, growing pause (see [`jittered_pause`]).
    fn retry_pause(&self, retry: usize) -> Duration {
        let _ = retry;
        Duration::ZERO
    }

    /// Applies pending embedded migrations on `conn`, in one transaction, serialized across
    /// processes; returns how many ran. Runs outside any transaction the store opened.
    fn migrate(&self, conn: &mut DbConnection) -> Result<usize, String>;

    /// Inserts `jobs` with their ready or scheduled executions; returns the new ids in the
    /// order given.
    fn enqueue(&self, conn: &mut DbConnection, jobs: &[NewJob], now: NaiveDateTime) -> QueryResult<Vec<JobId>>;

    /// Claims what `claim` asks for: ready jobs of its kinds, queues in the order given, then
    /// priority, then job id; counts each claimed job's attempt. Claims nothing if the process
    /// row does not exist, and never a job another transaction is claiming.
    fn claim(&self, conn: &mut DbConnection, claim: &Claim<'_>) -> QueryResult<Vec<ClaimedJob>>;

    /// Deletes the claims of `tokens` that still exist and returns those tokens: the deletion
    /// decides, so a concurrent watchdog and this transaction never both act on one claim.
    fn take_claims(&self, conn: &mut DbConnection, tokens: &[ClaimToken]) -> QueryResult<Vec<ClaimToken>>;

    /// Deletes the claims of `tokens` that still exist, marks their jobs finished at `now`,
    /// and returns those tokens (the deletion decides, as in [`Dialect::take_claims`]) with
    /// the concurrency keys their jobs held, in a statement of its own; `None` where the
    /// backend has none, and the store takes the claims and marks the jobs itself.
    fn complete_claims(
        &self,
        conn: &mut DbConnection,
        tokens: &[ClaimToken],
        now: NaiveDateTime,
    ) -> QueryResult<Option<CompletedClaims>> {
        let _ = (conn, tokens, now);
        Ok(None)
    }

    /// The jobs among `ids` (sorted) still in `solidq_waiting_executions`, their rows locked
    /// until the transaction ends, so that two transactions resolving one waiting job take
    /// turns (PostgreSQL and MySQL: `FOR UPDATE` in id order; SQLite's write lock already does).
    fn lock_waiting(&self, conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<Vec<JobId>> {
        use super::schema::solidq_waiting_executions as waiting;
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(super::params::ID_CHUNK) {
            found.extend(
                waiting::table
                    .filter(waiting::job_id.eq_any(chunk))
                    .order(waiting::job_id)
                    .select(waiting::job_id)
                    .load::<JobId>(conn)?,
            );
        }
        Ok(found)
    }

    /// Serializes, until the transaction ends, every admission and release of concurrency
    /// `key` (PostgreSQL: a transaction advisory lock; SQLite's write lock already does).
    fn lock_key(&self, conn: &mut DbConnection, key: &str) -> QueryResult<()> {
        let _ = (conn, key);
        Ok(())
    }

    /// Whether `work` runs as one statement here, atomic without a transaction around it: the
    /// store then spares the BEGIN and COMMIT round trips on the hot path.
    fn one_statement(&self, work: HotPath<'_>) -> bool {
        let _ = work;
        false
    }

    /// Clears what claims and finishes leave behind in the queue tables, outside any
    /// transaction; returns whether it did anything. PostgreSQL keeps deleted rows until a
    /// vacuum, and a claim walks past their index entries: without one (autovacuum off, or
    /// behind) claims slow down as a drain goes on.
    fn tidy(&self, conn: &mut DbConnection) -> QueryResult<bool> {
        let _ = conn;
        Ok(false)
    }

    /// Tells the listeners of other processes (see [`Dialect::ready_listener`]) that jobs may
    /// be claimable without a ready row being inserted (a paused queue was resumed), inside
    /// the caller's transaction.
    fn notify_ready(&self, conn: &mut DbConnection) -> QueryResult<()> {
        let _ = conn;
        Ok(())
    }

    /// A loop telling when other processes may have made jobs ready, if the backend can
    /// (PostgreSQL's LISTEN/NOTIFY; SQLite's `data_version`, which also counts the commits
    /// in `context.changes`); `None` makes workers rely on polling for those.
    fn ready_listener(&self, context: ListenerContext) -> Option<ReadyListener> {
        let _ = context;
        None
    }

    /// Deletes every claim of `process` and returns their job ids.
    fn take_claims_of(&self, conn: &mut DbConnection, process: ProcessId) -> QueryResult<Vec<JobId>>;

    /// Deletes the claims whose process row is missing and returns their job ids.
    fn take_orphan_claims(&self, conn: &mut DbConnection) -> QueryResult<Vec<JobId>>;

    /// Deletes up to `batch` scheduled executions due at `now`, earliest first, and returns
    /// their job ids (to be made ready). Never waits for rows another dispatcher is taking.
    fn take_due(&self, conn: &mut DbConnection, now: NaiveDateTime, batch: usize) -> QueryResult<Vec<JobId>>;

    /// Deletes the row of `process` (if its heartbeat is older than `cutoff`, when given) and
    /// returns what it said: the deletion decides which watchdog reaps, and a heartbeat that
    /// committed first makes the cutoff fail.
    fn delete_process(
        &self,
        conn: &mut DbConnection,
        process: ProcessId,
        cutoff: Option<NaiveDateTime>,
    ) -> QueryResult<Option<DeadProcess>>;

    /// Whether the database is still the one this store opened; the reason if not (sticky:
    /// once gone, always gone). Backends reached over a network answer `Ok`.
    fn check_database(&self) -> Result<(), String> {
        Ok(())
    }

    /// The reason given by the last failed [`Dialect::check_database`], without checking
    /// again.
    fn database_gone(&self) -> Option<String> {
        None
    }

    /// Session liveness, if this backend can prove it.
    /// Takes the leader lock for `process` if it is free, or tells whether `process` still
    /// holds it (see `store::leadership`), outside any transaction. By default the lock is a
    /// second lock on the process's session connection ([`SessionLiveness::try_lead`]); a
    /// backend without sessions never leads.
    fn try_lead(&self, process: ProcessId) -> StoreResult<Candidacy> {
        match self.sessions() {
            Some(sessions) => sessions.try_lead(process),
            None => Ok(Candidacy { leads: false, fleet: None }),
        }
    }

    /// Gives up the leader lock of `process` if it holds it.
    fn resign(&self, process: ProcessId) {
        if let Some(sessions) = self.sessions() {
            sessions.resign(process);
        }
    }

    /// Whether the maintenance leader's row still has `term`, locking it shared until the
    /// transaction ends so that no election commits meanwhile (SQLite's write lock already
    /// excludes one).
    fn hold_term(&self, conn: &mut DbConnection, term: i64) -> QueryResult<bool> {
        use crate::store::schema::solidq_leaders as leaders;
        let current: Option<i64> = leaders::table
            .filter(leaders::name.eq(crate::store::leadership::MAINTENANCE))
            .select(leaders::term)
            .first(conn)
            .optional()?;
        Ok(current == Some(term))
    }

    fn sessions(&self) -> Option<&dyn SessionLiveness> {
        None
    }

    /// Bounds every statement of the current read transaction to `timeout` (PostgreSQL:
    /// `SET LOCAL statement_timeout`). SQLite has none reachable through diesel: the
    /// dashboard's reads bound the rows they touch instead.
    fn limit_statements(&self, conn: &mut DbConnection, timeout: std::time::Duration) -> QueryResult<()> {
        let _ = (conn, timeout);
        Ok(())
    }

    /// The database's estimate of a row count (PostgreSQL: the planner's), where counting
    /// would read too many rows; `None` where the backend has none.
    fn estimate_rows(&self, conn: &mut DbConnection, what: Estimate) -> QueryResult<Option<u64>> {
        let _ = (conn, what);
        Ok(None)
    }
}

/// Row counts a dialect may estimate (see [`Dialect::estimate_rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Estimate {
    /// Ended jobs: finished (`None`) or with this end state.
    Ended(Option<super::executions::EndState>),
}

/// Proof that a process's database session is open, held on a connection of its own for the
/// process's life. When the process dies, the server ends the session and the proof is gone
/// long before its heartbeat expires.
pub trait SessionLiveness: Send + Sync {
    /// Opens the process's dedicated connection and runs `insert` (which writes the process
    /// row and returns its id) on it, in one transaction with taking the proof: nobody can
    /// see the row while its proof is missing. Runs outside any store transaction.
    fn register(&self, insert: &mut dyn FnMut(&mut DbConnection) -> QueryResult<ProcessId>) -> StoreResult<ProcessId>;

    /// Checks the dedicated connection of `process` (if this store registered it) and, if it
    /// broke (the server restarted), reconnects and takes the proof again. Returns whether it
    /// had to. Runs outside any store transaction.
    fn keep(&self, process: ProcessId) -> StoreResult<bool>;

    /// Ids among `candidates` whose proof is missing, i.e. whose session ended. Runs on a
    /// pooled connection, outside any transaction.
    fn gone(&self, conn: &mut DbConnection, candidates: &[ProcessId]) -> QueryResult<Vec<ProcessId>>;

    /// Closes the dedicated connection of `process` (deregistered or reaped), giving up its
    /// proof.
    fn release(&self, process: ProcessId);

    /// The server's id of the session holding the proof of `process`, if this store
    /// registered it and the session is up (PostgreSQL: the backend pid).
    fn session_id(&self, process: ProcessId) -> Option<i32>;

    /// Takes the leader lock on the session connection of `process` if it is free (in the
    /// same round trip, counts the registered processes), or, if the session already holds
    /// it, checks that the connection is still up. A broken connection is given up (the next
    /// [`SessionLiveness::keep`] reconnects) and its process does not lead.
    fn try_lead(&self, process: ProcessId) -> StoreResult<Candidacy>;

    /// Releases the leader lock of `process` if its session holds it.
    fn resign(&self, process: ProcessId);
}

/// Runs `$body` with `$c` bound to the backend's own connection, for statements written the
/// same way for every backend that diesel's `MultiConnection` cannot build (`ON CONFLICT`):
/// the body is compiled once per backend.
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::store::connection::DbConnection::Sqlite($c) => $body,
            $crate::store::connection::DbConnection::Postgres($c) => $body,
            #[cfg(feature = "mysql")]
            $crate::store::connection::DbConnection::Mysql($c) => $body,
        }
    };
}
pub(crate) use on_backend;

/// A pause of 5–25 ms, doubled for each earlier `retry`, so that two transactions that
/// deadlocked do not collide again at once.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn jittered_pause(retry: usize) -> Duration {
    let factor = 1u64 << retry.min(6);
    Duration::from_millis(fastrand::u64(5..=25) * factor)
}

/// Deletes (`take_ids!(conn, table, filtered)`) or updates (`take_ids!(conn, table, filtered,
/// set changes)`) the rows of `filtered` (a query on `table`), returning their `key` column
/// (`take_ids!(…; key)`). SQLite and PostgreSQL write with `RETURNING`; MySQL has none, so it
/// locks the rows with `SELECT key … FOR UPDATE` and then writes those keys, in the caller's
/// transaction. Either way the rows written decide a race: a row another transaction took
/// first is not returned. `key` must be unique in `table`.
macro_rules! take_ids {
    ($conn:expr, $table:ident, $filtered:expr; $key:expr) => {
        $crate::store::dialect::take_ids!(@run $conn, $table, $filtered, $key, |rows| diesel::delete(rows))
    };
    ($conn:expr, $table:ident, $filtered:expr, set $changes:expr; $key:expr) => {
        $crate::store::dialect::take_ids!(@run $conn, $table, $filtered, $key, |rows| diesel::update(rows).set($changes))
    };
    (@run $conn:expr, $table:ident, $filtered:expr, $key:expr, |$rows:ident| $write:expr) => {
        match $conn {
            $crate::store::connection::DbConnection::Sqlite(conn) => {
                let $rows = $filtered;
                $write.returning($key).get_results::<i64>(conn)
            }
            $crate::store::connection::DbConnection::Postgres(conn) => {
                let $rows = $filtered;
                $write.returning($key).get_results::<i64>(conn)
            }
            #[cfg(feature = "mysql")]
            $crate::store::connection::DbConnection::Mysql(conn) => {
                match $filtered.select($key).for_update().load::<i64>(conn) {
                    Ok(keys) if keys.is_empty() => Ok(keys),
                    Ok(keys) => {
                        let $rows = $table::table.filter($key.eq_any(&keys));
                        $write.execute(conn).map(|_| keys)
                    }
                    Err(err) => Err(err),
                }
            }
        }
    };
}
pub(crate) use take_ids;

/// The connection of the variant a dialect expects; a mismatch is a bug in the store.
macro_rules! expect_variant {
    ($conn:expr, $variant:ident) => {
        match $conn {
            $crate::store::connection::DbConnection::$variant(conn) => conn,
            #[allow(unreachable_patterns)]
            _ => {
                return Err(diesel::result::Error::QueryBuilderError(
                    concat!("a ", stringify!($variant), " dialect was given another backend's connection").into(),
                ))
            }
        }
    };
}
pub(crate) use expect_variant;

/// `Dialect::lock_waiting` for the backends with `FOR UPDATE` (`$conn` a backend connection):
/// the waiting rows of `$ids`, locked in id order.
macro_rules! waiting_for_update {
    ($conn:expr, $ids:expr) => {{
        use crate::store::schema::solidq_waiting_executions as waiting;
        let conn = $conn;
        let mut found = Vec::with_capacity($ids.len());
        for chunk in $ids.chunks(crate::store::params::ID_CHUNK) {
            found.extend(
                waiting::table
                    .filter(waiting::job_id.eq_any(chunk))
                    .order(waiting::job_id)
                    .select(waiting::job_id)
                    .for_update()
                    .load::<JobId>(conn)?,
            );
        }
        Ok(found)
    }};
}
pub(crate) use waiting_for_update;

/// A claimed job's columns as the row-by-key claims (SQLite, MySQL) read them back: kind,
/// arguments, queue, priority, attempts, max attempts, rate-limit key.
pub(super) type ClaimedRow = (String, String, String, i32, i32, i32, Option<String>);

/// A [`ClaimedRow`] read with its job id first.
pub(super) type ClaimedRowWithId = (JobId, String, String, String, i32, i32, i32, Option<String>);

/// The claims of `picked` (job id, when it became ready), in pick order, from the claim ids
/// and job rows written or read in the claiming transaction.
pub(super) fn claimed_jobs(
    picked: Vec<(JobId, NaiveDateTime)>,
    claims: &std::collections::HashMap<JobId, i64>,
    mut details: std::collections::HashMap<JobId, ClaimedRow>,
) -> QueryResult<Vec<ClaimedJob>> {
    let mut out = Vec::with_capacity(picked.len());
    for (job_id, ready_at) in picked {
        let (Some(claim_id), Some((kind, arguments, queue, priority, attempts, max_attempts, rate_limit_key))) =
            (claims.get(&job_id).copied(), details.remove(&job_id))
        else {
            // Both rows are in the claiming transaction; a miss means the schema is broken.
            return Err(diesel::result::Error::NotFound);
        };
        out.push(ClaimedJob {
            token: ClaimToken { job_id, claim_id },
            kind,
            arguments,
            queue,
            priority,
            // The attempt this execution is; it is written when it ends (see `lifecycle`).
            attempts: attempts + 1,
            max_attempts,
            ready_at,
            rate_limit_key,
            rate_limit_deadline: None,
            rate_limit_start: None,
        });
    }
    Ok(out)
}

/// The session maps stay usable after a panic elsewhere: their entries are plain data.
pub(super) fn lock_or_recover<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
