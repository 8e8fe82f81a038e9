//! Storage: the only code that writes SQL.
//!
//! [`Store`] is the narrow interface every backend implements ([`sqlite::SqliteStore`],
//! [`postgres::PgStore`]). Above this module nothing knows which database it talks to: backend
//! differences (SKIP LOCKED, RETURNING, IMMEDIATE transactions, advisory locks) stay here.
//! Every method is blocking; actors call them from a blocking pool, never on an event loop.
//! Every method that depends on the time takes `now` so tests can choose it.
//!
//! A job's state is which execution table holds it (as in Solid Queue): ready, scheduled,
//! claimed, failed, or none with `finished_at` set.

use std::sync::Arc;

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::config::DatabaseUrl;
use crate::job::{JobId, NewJob};

pub mod pool;
pub mod postgres;
mod queries;
pub mod schema;
pub mod sqlite;

/// Id of a row in `solidq_processes`.
pub type ProcessId = i64;

/// Errors from the database layer, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had from the pool (database down, pool exhausted).
    #[error("no database connection for {action}: {message}")]
    Connection {
        /// What the store was doing.
        action: &'static str,
        /// The pool's or driver's message.
        message: String,
    },
    /// A statement failed.
    #[error("database error while {action}: {source}")]
    Query {
        /// What the store was doing.
        action: &'static str,
        /// The diesel error.
        source: diesel::result::Error,
    },
    /// Applying migrations failed.
    #[error("migrating the database failed: {0}")]
    Migration(String),
    /// The URL's scheme names no backend compiled into this build.
    #[error("unsupported database URL {url:?}: {reason}")]
    UnsupportedUrl {
        /// The URL as given (password removed).
        url: String,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// Wraps a diesel error with what was being done.
    pub fn query(action: &'static str) -> impl FnOnce(diesel::result::Error) -> StoreError {
        move |source| StoreError::Query { action, source }
    }

    /// Wraps a pool or connection error with what was being done.
    pub fn connection(action: &'static str) -> impl FnOnce(diesel::r2d2::PoolError) -> StoreError {
        move |err| StoreError::Connection { action, message: err.to_string() }
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// One entry of a worker's queue list, as configured by `SOLIDQ_WORKERS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueuePattern {
    /// `*`: every queue.
    All,
    /// A queue by its exact name.
    Exact(String),
    /// `name*`: every queue whose name starts with the prefix.
    Prefix(String),
}

impl std::fmt::Display for QueuePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueuePattern::All => f.write_str("*"),
            QueuePattern::Exact(name) => f.write_str(name),
            QueuePattern::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

impl QueuePattern {
    /// Parses `*`, `prefix*` or an exact name.
    ///
    /// ```
    /// use solidq::store::QueuePattern;
    /// assert_eq!(QueuePattern::parse("*"), QueuePattern::All);
    /// assert_eq!(QueuePattern::parse("reports*"), QueuePattern::Prefix("reports".into()));
    /// assert_eq!(QueuePattern::parse("default"), QueuePattern::Exact("default".into()));
    /// ```
    pub fn parse(text: &str) -> QueuePattern {
        match text.strip_suffix('*') {
            Some("") => QueuePattern::All,
            Some(prefix) => QueuePattern::Prefix(prefix.to_string()),
            None => QueuePattern::Exact(text.to_string()),
        }
    }

    /// Whether `queue` matches this pattern.
    pub fn matches(&self, queue: &str) -> bool {
        match self {
            QueuePattern::All => true,
            QueuePattern::Exact(name) => name == queue,
            QueuePattern::Prefix(prefix) => queue.starts_with(prefix.as_str()),
        }
    }
}

/// Proof of a claim: the claimed execution's id (never reused) and its job.
///
/// Finishing, failing, retrying or releasing with a token whose claim row is gone (because the
/// process was pruned and the job released, perhaps claimed again elsewhere) changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ClaimToken {
    /// `solidq_jobs.id`.
    pub job_id: JobId,
    /// `solidq_claimed_executions.id`, unique over the table's life.
    pub claim_id: i64,
}

/// A job claimed for a process, with everything needed to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    /// Fencing token of this claim.
    pub token: ClaimToken,
    /// Kind name.
    pub kind: String,
    /// JSON text of the arguments.
    pub arguments: String,
    /// Queue it was claimed from.
    pub queue: String,
    /// Priority (lower first).
    pub priority: i32,
    /// Executions started, this one included.
    pub attempts: i32,
    /// Executions allowed.
    pub max_attempts: i32,
}

/// Whether a claim-guarded change took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// The claim was still ours; the change is committed.
    Applied,
    /// The claim row no longer exists (released or re-claimed): nothing was changed.
    Stale,
}

/// The error recorded with a failed job, Solid Queue's `{class, message, backtrace}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FailureRecord {
    /// Category: `JobError`, `Panic`, `UnknownKind`, `BadArguments`, `ProcessDied`, ...
    pub class: String,
    /// Human-readable message.
    pub message: String,
    /// Extra context (panic location, process details), if any.
    pub backtrace: Option<String>,
}

/// What a process writes about itself when it registers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewProcess {
    /// `Runtime` for a solidq runtime process.
    pub kind: String,
    /// Unique name, e.g. `solidq-host-1234-ab12`.
    pub name: String,
    /// OS pid.
    pub pid: i32,
    /// Host name.
    pub hostname: String,
    /// JSON metadata: worker groups, boot id, pid namespace, start time.
    pub metadata: serde_json::Value,
}

/// A row of `solidq_processes`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessRow {
    /// Row id.
    pub id: ProcessId,
    /// Process kind.
    pub kind: String,
    /// Unique name.
    pub name: String,
    /// OS pid.
    pub pid: i32,
    /// Host name.
    pub hostname: String,
    /// Metadata written at registration.
    pub metadata: serde_json::Value,
    /// Last successful heartbeat (UTC).
    pub last_heartbeat_at: NaiveDateTime,
    /// Registration time (UTC).
    pub created_at: NaiveDateTime,
}

/// Result of a heartbeat write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The row was stamped.
    Stamped,
    /// The row is gone: this process was pruned and must re-register.
    Missing,
}

/// What to do with the claims of a process found dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum DeathPolicy {
    /// Back to ready (the attempt stays counted); failed once max attempts are reached.
    #[default]
    Retry,
    /// Straight to failed, as Solid Queue does.
    Fail,
}

/// Why a process is being reaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeathCause {
    /// Its heartbeat is older than `cutoff`. The store re-checks this in the same transaction
    /// and does nothing if the process beat meanwhile, or if the transaction only got its locks
    /// after `deadline`: a verdict that had to wait that long for the database was made blind
    /// (the database was locked or unreachable, so the process may not have been able to beat
    /// either).
    HeartbeatOlderThan {
        /// Heartbeats before this are too old.
        cutoff: NaiveDateTime,
        /// When the verdict expires (monotonic clock); `None`: never.
        deadline: Option<std::time::Instant>,
    },
    /// A liveness probe (session lock free, pid gone) proved it dead: no heartbeat check.
    Proven(String),
}

impl DeathCause {
    /// Whether the verdict expired before the store could act on it.
    pub(crate) fn expired(&self) -> bool {
        matches!(self, DeathCause::HeartbeatOlderThan { deadline: Some(deadline), .. }
            if std::time::Instant::now() > *deadline)
    }
}

/// Counts from reaping one dead process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReapOutcome {
    /// Whether this call removed the process row (false: already gone or beat meanwhile).
    pub reaped: bool,
    /// Claims returned to ready.
    pub retried: usize,
    /// Claims moved to failed.
    pub failed: usize,
}

/// Counts of jobs by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    /// In `solidq_ready_executions`.
    pub ready: i64,
    /// In `solidq_scheduled_executions`.
    pub scheduled: i64,
    /// In `solidq_claimed_executions`.
    pub claimed: i64,
    /// In `solidq_failed_executions`.
    pub failed: i64,
    /// `finished_at` set.
    pub finished: i64,
}

/// Job counts of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Queue name.
    pub queue: String,
    /// Counts by state.
    #[serde(flatten)]
    pub counts: JobCounts,
}

/// A job row as a status view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    /// Row id.
    pub id: JobId,
    /// Kind name.
    pub kind: String,
    /// Queue name.
    pub queue: String,
    /// Priority.
    pub priority: i32,
    /// JSON text of the arguments.
    pub arguments: String,
    /// Executions started.
    pub attempts: i32,
    /// Executions allowed.
    pub max_attempts: i32,
    /// `ready`, `scheduled`, `claimed`, `failed` or `finished`.
    pub state: String,
    /// When it runs or ran at the earliest.
    pub scheduled_at: Option<NaiveDateTime>,
    /// When it finished.
    pub finished_at: Option<NaiveDateTime>,
    /// The last error recorded (retry or failure), as JSON text of a [`FailureRecord`].
    pub last_error: Option<String>,
    /// The process holding its claim, if claimed.
    pub process_id: Option<ProcessId>,
}

/// The storage interface. One implementation per backend; all pass `tests/conformance.rs`.
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Applies pending embedded migrations; returns how many ran.
    fn migrate(&self) -> StoreResult<usize>;

    /// Inserts `jobs` (one INSERT for all) and their ready or scheduled executions in one
    /// transaction; returns the new ids in the order given.
    fn enqueue(&self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>>;

    /// Claims up to `limit` ready jobs for `process`, taking queues in the order of `queues`,
    /// then priority, then job id. Claims nothing if the process row does not exist.
    /// Each claimed job's `attempts` is incremented.
    fn claim(
        &self,
        process: ProcessId,
        queues: &[QueuePattern],
        limit: usize,
        now: NaiveDateTime,
    ) -> StoreResult<Vec<ClaimedJob>>;

    /// Marks the job finished, if the claim is still ours.
    fn finish(&self, token: ClaimToken, now: NaiveDateTime) -> StoreResult<Fenced>;

    /// Moves the job to failed with `error`, if the claim is still ours.
    fn fail(&self, token: ClaimToken, error: &FailureRecord, now: NaiveDateTime) -> StoreResult<Fenced>;

    /// Records `error` as the job's last error and schedules it again at `run_at` (ready at once
    /// if `run_at <= now`), if the claim is still ours.
    fn retry(
        &self,
        token: ClaimToken,
        error: &FailureRecord,
        run_at: NaiveDateTime,
        now: NaiveDateTime,
    ) -> StoreResult<Fenced>;

    /// Returns a claim to ready, if it is still ours, and gives back the attempt the claim
    /// counted: the job was never started (a claim handed back unstarted, a handler that was not
    /// running) or a graceful drain cut its run short. Only a process death counts an attempt
    /// without an outcome.
    fn release(&self, token: ClaimToken, now: NaiveDateTime) -> StoreResult<Fenced>;

    /// Moves due scheduled jobs (scheduled_at <= now) to ready, at most `batch`; returns how many.
    fn dispatch_due(&self, now: NaiveDateTime, batch: usize) -> StoreResult<usize>;

    /// Inserts a process row and returns its id. Backends with session liveness (PostgreSQL)
    /// also take the process's session lock here, on a connection kept for the process's life.
    fn register_process(&self, process: &NewProcess, now: NaiveDateTime) -> StoreResult<ProcessId>;

    /// Stamps the process's `last_heartbeat_at`.
    fn heartbeat(&self, process: ProcessId, now: NaiveDateTime) -> StoreResult<Beat>;

    /// Checks the process's session-liveness connection and, if it broke (e.g. the database
    /// restarted), reconnects and takes the session lock again. Returns whether it had to.
    /// Backends without session liveness return `Ok(false)`.
    fn keep_session(&self, process: ProcessId) -> StoreResult<bool>;

    /// Graceful exit: returns every claim of `process` to ready, giving their attempts back as
    /// [`Store::release`] does, and deletes its row (and drops its session lock). Returns the
    /// number of claims released.
    fn deregister(&self, process: ProcessId, now: NaiveDateTime) -> StoreResult<usize>;

    /// All process rows, oldest first.
    fn processes(&self) -> StoreResult<Vec<ProcessRow>>;

    /// Ids among `candidates` whose session lock is free, i.e. whose database session ended.
    /// Backends without session liveness return an empty list.
    fn sessions_gone(&self, candidates: &[ProcessId]) -> StoreResult<Vec<ProcessId>>;

    /// Removes a dead process and hands its claims back per `policy` (to failed in any case once
    /// a job reached its max attempts), in one transaction. Safe to run from several watchdogs
    /// at once: only one of them reaps a given process.
    fn reap_process(
        &self,
        process: ProcessId,
        cause: &DeathCause,
        policy: DeathPolicy,
        now: NaiveDateTime,
    ) -> StoreResult<ReapOutcome>;

    /// Returns claims whose process row is missing to ready; returns how many.
    fn release_orphans(&self, now: NaiveDateTime) -> StoreResult<usize>;

    /// Counts of jobs by state, overall and per queue (queues sorted by name).
    fn counts(&self) -> StoreResult<(JobCounts, Vec<QueueCounts>)>;

    /// The claims `process` holds, by job id.
    fn claimed_by(&self, process: ProcessId) -> StoreResult<Vec<ClaimToken>>;

    /// One job, if it exists.
    fn job(&self, id: JobId) -> StoreResult<Option<JobRow>>;
}

/// A shared, type-erased store.
pub type SharedStore = Arc<dyn Store>;

/// Connects to `url` with a pool of `pool_size` connections, choosing the backend from the
/// URL's scheme (never by trial).
pub fn connect(url: &DatabaseUrl, pool_size: u32) -> StoreResult<SharedStore> {
    match url {
        DatabaseUrl::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path, pool_size)?)),
        DatabaseUrl::Postgres(url) => Ok(Arc::new(postgres::PgStore::connect(url, pool_size)?)),
    }
}

/// A diesel connection on which jobs can be enqueued inside the caller's own transaction:
/// the jobs exist only if that transaction commits.
///
/// Implemented for `SqliteConnection` and `PgConnection`; used by
/// [`Queue::enqueue_in`](crate::Queue::enqueue_in).
pub trait EnqueueConnection {
    /// Inserts `jobs` and their executions on this connection (in a savepoint when a
    /// transaction is open); returns the new ids in the order given.
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>>;
}
