//! Jobs that compose: batches with callbacks, and jobs that wait for other jobs (workflows).
//!
//! Every transaction that ends jobs (a finish, a failure for good, a discard or a cancel: the
//! worker's outcomes, a death, an operator, a concurrency limit) calls `jobs_ended` with
//! them, in the same transaction:
//!
//! - **Batches**: each member's end is counted on its batch row (`pending`, `succeeded`,
//!   `failed`) by an UPDATE, which takes the row's lock: two transactions ending the batch's last
//!   two members are serialized, and the one whose update brings `pending` to 0 (with
//!   `finished_at` still empty) enqueues the callbacks and writes their ids and `finished_at`.
//!   So a callback is enqueued exactly once, in the transaction of the last member's outcome,
//!   whatever crashes or races around it. Members never take the one-statement completion path.
//! - **Workflows**: a job enqueued with `after` waits in `solidq_waiting_executions`. When a job
//!   it depends on ends, the waiting job's verdict is taken again under a lock on its waiting
//!   row (`Dialect::lock_waiting`) taken before the prerequisites' states are read, so the last
//!   two prerequisites ending at once cannot both see the other one running: it runs when all ended (and none it must not run without failed), or is cancelled
//!   (in turn ending, so its own dependants are resolved in the same transaction). A job
//!   completed on PostgreSQL's one-statement path while a dependant was being added is resolved
//!   right after, and the dispatcher's sweep ([`Store::resolve_waiting`]) catches a crash in
//!   between.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::concurrency;
use super::connection::DbConnection;
use super::dialect::Dialect;
use super::executions::{end_jobs, insert_executions, EndState};
use super::inspect::{jobs_on, JobRow};
use super::params::ID_CHUNK;
use super::schema::{
    solidq_batches as batches, solidq_failed_executions as failed, solidq_job_dependencies as deps,
    solidq_jobs as jobs, solidq_ready_executions as ready, solidq_scheduled_executions as scheduled,
    solidq_waiting_executions as waiting,
};
use super::sql_types::{at, At};
use super::{Store, StoreError, StoreResult};
use crate::model::{BatchId, Dependency, Enqueued, FailureKind, FailureRecord, JobId, NewJob, OnDependencyFailure};

/// How a job ended, as its batch and its dependants see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Finished.
    Succeeded,
    /// Failed for good, discarded or cancelled.
    Failed,
}

/// A batch to create: its callbacks, each an ordinary job enqueued once when the batch's last
/// member ends. See [`BatchBuilder`](crate::BatchBuilder) for the typed builder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewBatch {
    /// Free text shown by `solidq batches`.
    pub description: Option<String>,
    /// Enqueued when every member finished.
    pub on_success: Option<NewJob>,
    /// Enqueued when every member ended, however.
    pub on_finish: Option<NewJob>,
    /// Enqueued when every member ended and at least one failed for good, was discarded or
    /// was cancelled.
    pub on_failure: Option<NewJob>,
}

/// A callback as stored on the batch row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CallbackJob {
    kind: String,
    arguments: String,
    queue: String,
    priority: i32,
    max_attempts: i32,
}

impl CallbackJob {
    fn of(job: &NewJob) -> String {
        let stored = CallbackJob {
            kind: job.kind.clone(),
            arguments: job.arguments.clone(),
            queue: job.queue.clone(),
            priority: job.priority,
            max_attempts: job.max_attempts,
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    fn new_job(text: &str) -> Option<NewJob> {
        let stored: CallbackJob = serde_json::from_str(text).ok()?;
        Some(NewJob {
            kind: stored.kind,
            arguments: stored.arguments,
            queue: stored.queue,
            priority: stored.priority,
            max_attempts: stored.max_attempts,
            scheduled_at: None,
            unique_key: None,
            concurrency: None,
            after: Vec::new(),
            rate_limit: None,
        })
    }
}

/// Which callback of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackKind {
    /// `on_success`.
    Success,
    /// `on_finish`.
    Finish,
    /// `on_failure`.
    Failure,
}

/// One callback of a batch and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchCallback {
    /// Which one.
    pub when: CallbackKind,
    /// The job kind it enqueues.
    pub kind: String,
    /// The job enqueued for it once the batch ended (`None`: not yet, or not for this outcome).
    pub job: Option<JobId>,
}

/// A batch as `solidq batches show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchInfo {
    /// Row id.
    pub id: BatchId,
    /// Free text given at creation.
    pub description: Option<String>,
    /// Members in all (jobs added later included).
    pub size: i64,
    /// Members that have not ended.
    pub pending: i64,
    /// Members that finished.
    pub succeeded: i64,
    /// Members that failed for good, were discarded or cancelled.
    pub failed: i64,
    /// The callbacks it has.
    pub callbacks: Vec<BatchCallback>,
    /// When it was created (UTC).
    pub created_at: NaiveDateTime,
    /// When its last member ended (UTC); `None` while it is open.
    pub finished_at: Option<NaiveDateTime>,
}

impl BatchInfo {
    /// Whether every member ended.
    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }
}

type BatchRow = (
    BatchId,
    Option<String>,
    i64,
    i64,
    i64,
    i64,
    (Option<String>, Option<String>, Option<String>),
    (Option<JobId>, Option<JobId>, Option<JobId>),
    NaiveDateTime,
    Option<NaiveDateTime>,
);

fn batch_info(row: BatchRow) -> BatchInfo {
    let (id, description, size, pending, succeeded, failed, (on_success, on_finish, on_failure), ids, created, done) =
        row;
    let mut callbacks = Vec::new();
    for (when, stored, job) in [
        (CallbackKind::Success, on_success, ids.0),
        (CallbackKind::Finish, on_finish, ids.1),
        (CallbackKind::Failure, on_failure, ids.2),
    ] {
        if let Some(stored) = stored {
            let kind = CallbackJob::new_job(&stored).map(|job| job.kind).unwrap_or_default();
            callbacks.push(BatchCallback { when, kind, job });
        }
    }
    BatchInfo { id, description, size, pending, succeeded, failed, callbacks, created_at: created, finished_at: done }
}

macro_rules! batch_columns {
    () => {
        (
            batches::id,
            batches::description,
            batches::total,
            batches::pending,
            batches::succeeded,
            batches::failed,
            (batches::on_success, batches::on_finish, batches::on_failure),
            (batches::success_job_id, batches::finish_job_id, batches::failure_job_id),
            batches::created_at,
            batches::finished_at,
        )
    };
}

/// Inserts the batch row; returns its id.
fn insert_batch(conn: &mut DbConnection, batch: &NewBatch, now: NaiveDateTime) -> QueryResult<BatchId> {
    let row = (
        batches::description.eq(&batch.description),
        batches::total.eq(0i64),
        batches::pending.eq(0i64),
        batches::succeeded.eq(0i64),
        batches::failed.eq(0i64),
        batches::on_success.eq(batch.on_success.as_ref().map(CallbackJob::of)),
        batches::on_finish.eq(batch.on_finish.as_ref().map(CallbackJob::of)),
        batches::on_failure.eq(batch.on_failure.as_ref().map(CallbackJob::of)),
        batches::created_at.eq(at(now)),
    );
    match conn {
        DbConnection::Sqlite(conn) => {
            diesel::insert_into(batches::table).values(row).returning(batches::id).get_result(conn)
        }
        DbConnection::Postgres(conn) => {
            diesel::insert_into(batches::table).values(row).returning(batches::id).get_result(conn)
        }
        #[cfg(feature = "mysql")]
        DbConnection::Mysql(conn) => {
            diesel::insert_into(batches::table).values(row).execute(conn)?;
            diesel::select(last_insert_id()).get_result(conn)
        }
    }
}

#[cfg(feature = "mysql")]
diesel::define_sql_function! {
    /// MySQL's id of the last AUTO_INCREMENT insert on this connection.
    #[sql_name = "LAST_INSERT_ID"]
    fn last_insert_id() -> diesel::sql_types::BigInt;
}

/// Creates a batch of `members` (and their executions) in the caller's transaction; returns
/// its id and what became of each member (a unique job whose key was held is not a member).
pub(crate) fn create_batch(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    batch: &NewBatch,
    members: &[NewJob],
    now: NaiveDateTime,
) -> QueryResult<(BatchId, Vec<Enqueued>)> {
    let id = insert_batch(conn, batch, now)?;
    let enqueued = add_members(dialect, conn, id, members, now)?.ok_or(diesel::result::Error::NotFound)?;
    Ok((id, enqueued))
}

/// Adds `members` to open batch `batch` in the caller's transaction; `None` if the batch does
/// not exist or has ended.
pub(crate) fn add_members(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    batch: BatchId,
    members: &[NewJob],
    now: NaiveDateTime,
) -> QueryResult<Option<Vec<Enqueued>>> {
    let count = i64::try_from(members.len()).unwrap_or(i64::MAX);
    // Counted first (the update also locks the row and proves the batch open): a member that
    // ends while it is enqueued (cancelled by a failed prerequisite, discarded by its
    // concurrency limit) is then counted down like any other.
    let open = diesel::update(batches::table.find(batch).filter(batches::finished_at.is_null()))
        .set((batches::total.eq(batches::total + count), batches::pending.eq(batches::pending + count)))
        .execute(conn)?;
    if open == 0 {
        return Ok(None);
    }
    let enqueued = super::jobs::enqueue::enqueue_with_options_in(dialect, conn, members, Some(batch), now)?;
    let existing = i64::try_from(enqueued.iter().filter(|e| !e.is_new()).count()).unwrap_or(0);
    if existing > 0 || members.is_empty() {
        // Jobs whose unique key was held are not members.
        diesel::update(batches::table.find(batch))
            .set((batches::total.eq(batches::total - existing), batches::pending.eq(batches::pending - existing)))
            .execute(conn)?;
        finish_if_done(conn, dialect, batch, now)?;
    }
    Ok(Some(enqueued))
}

/// Enqueues the callbacks of `batch` if no member is pending and it has not ended yet.
fn finish_if_done(
    conn: &mut DbConnection,
    dialect: &dyn Dialect,
    batch: BatchId,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let row: Option<BatchRow> = batches::table
        .find(batch)
        .filter(batches::finished_at.is_null())
        .filter(batches::pending.le(0))
        .select(batch_columns!())
        .first(conn)
        .optional()?;
    let Some(row) = row else { return Ok(()) };
    let (_, _, _, _, _, failed, (on_success, on_finish, on_failure), ..) = row;
    // Only the transaction that wrote `finished_at` enqueues (the UPDATE waits for any other).
    let won = diesel::update(batches::table.find(batch).filter(batches::finished_at.is_null()))
        .set(batches::finished_at.eq(at(now)))
        .execute(conn)?;
    if won == 0 {
        return Ok(());
    }
    let mut enqueue = |stored: Option<String>| -> QueryResult<Option<JobId>> {
        let Some(job) = stored.as_deref().and_then(CallbackJob::new_job) else { return Ok(None) };
        let id = dialect.enqueue(conn, std::slice::from_ref(&job), now)?.first().copied();
        if let Some(id) = id {
            // The callback carries the batch's id so that it can read it (`Store::batch_of_job`).
            diesel::update(jobs::table.find(id)).set(jobs::batch_id.eq(batch)).execute(conn)?;
        }
        Ok(id)
    };
    let success = if failed == 0 { enqueue(on_success)? } else { None };
    let failure = if failed > 0 { enqueue(on_failure)? } else { None };
    let finish = enqueue(on_finish)?;
    diesel::update(batches::table.find(batch))
        .set((
            batches::success_job_id.eq(success),
            batches::finish_job_id.eq(finish),
            batches::failure_job_id.eq(failure),
        ))
        .execute(conn)?;
    Ok(())
}

/// Jobs among `ids` that belong to a batch or have dependants: (id, batch, has dependants).
fn composing(conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<Vec<(JobId, Option<BatchId>, bool)>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(ID_CHUNK) {
        out.extend(
            jobs::table
                .filter(jobs::id.eq_any(chunk))
                .filter(jobs::batch_id.is_not_null().or(jobs::has_dependants.eq(true)))
                .select((jobs::id, jobs::batch_id, jobs::has_dependants))
                .load::<(JobId, Option<BatchId>, bool)>(conn)?,
        );
    }
    Ok(out)
}

/// Counts the end of `ended` jobs on their batches and resolves the jobs waiting for them, in
/// the caller's transaction (see the module's documentation).
pub(crate) fn jobs_ended(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    ended: &[(JobId, Ending)],
    now: NaiveDateTime,
) -> QueryResult<()> {
    let mut round: Vec<(JobId, Ending)> = ended.to_vec();
    while !round.is_empty() {
        let ending: HashMap<JobId, Ending> = round.iter().copied().collect();
        let ids: Vec<JobId> = round.iter().map(|(id, _)| *id).collect();
        let found = composing(conn, &ids)?;
        let mut per_batch: BTreeMap<BatchId, (i64, i64)> = BTreeMap::new();
        let mut prerequisites = Vec::new();
        for (id, batch, has_dependants) in found {
            let end = ending.get(&id).copied().unwrap_or(Ending::Failed);
            if let Some(batch) = batch {
                let counts = per_batch.entry(batch).or_default();
                match end {
                    Ending::Succeeded => counts.0 += 1,
                    Ending::Failed => counts.1 += 1,
                }
            }
            if has_dependants {
                prerequisites.push(id);
            }
        }
        // Batches in id order, so that two transactions lock them in one order.
        for (batch, (succeeded, failed)) in per_batch {
            let counted = diesel::update(batches::table.find(batch).filter(batches::finished_at.is_null()))
                .set((
                    batches::pending.eq(batches::pending - (succeeded + failed)),
                    batches::succeeded.eq(batches::succeeded + succeeded),
                    batches::failed.eq(batches::failed + failed),
                ))
                .execute(conn)?;
            // An ended batch's callbacks (which carry its id) and members retried by hand
            // after it ended change nothing.
            if counted > 0 {
                finish_if_done(conn, dialect, batch, now)?;
            }
        }
        round = resolve_dependants(dialect, conn, &prerequisites, now)?;
    }
    Ok(())
}

/// Members among `ids` (failed, discarded or cancelled, about to run again by an operator's
/// retry) of batches still open count as pending again.
pub(crate) fn jobs_restarted(conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<()> {
    let found = composing(conn, ids)?;
    let mut per_batch: BTreeMap<BatchId, i64> = BTreeMap::new();
    for (_, batch, _) in found {
        if let Some(batch) = batch {
            *per_batch.entry(batch).or_default() += 1;
        }
    }
    for (batch, count) in per_batch {
        diesel::update(batches::table.find(batch).filter(batches::finished_at.is_null()))
            .set((batches::pending.eq(batches::pending + count), batches::failed.eq(batches::failed - count)))
            .execute(conn)?;
    }
    Ok(())
}

/// What a waiting job does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Every prerequisite ended, none it must not run without failed.
    Run,
    /// This prerequisite failed for good, was discarded or cancelled.
    Cancel(JobId),
    /// Some prerequisite has not ended.
    Wait,
}

/// The outcome of each of `ids` so far: `None` while it may still run. A job that no longer
/// exists (removed by the cleaner after it ended) counts as finished.
fn outcomes(conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<HashMap<JobId, Option<Ending>>> {
    let mut out: HashMap<JobId, Option<Ending>> = ids.iter().map(|id| (*id, Some(Ending::Succeeded))).collect();
    for chunk in ids.chunks(ID_CHUNK) {
        let rows: Vec<(JobId, Option<NaiveDateTime>, Option<String>)> = jobs::table
            .filter(jobs::id.eq_any(chunk))
            .select((jobs::id, jobs::finished_at, jobs::end_state))
            .load(conn)?;
        let failed: HashSet<JobId> =
            failed::table.filter(failed::job_id.eq_any(chunk)).select(failed::job_id).load(conn)?.into_iter().collect();
        for (id, finished_at, end_state) in rows {
            let outcome = match (finished_at, end_state) {
                (Some(_), None) => Some(Ending::Succeeded),
                (Some(_), Some(_)) => Some(Ending::Failed),
                (None, _) if failed.contains(&id) => Some(Ending::Failed),
                (None, _) => None,
            };
            out.insert(id, outcome);
        }
    }
    Ok(out)
}

/// The verdict of each of the waiting jobs `ids` from the states of their prerequisites.
fn verdicts(conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<BTreeMap<JobId, Verdict>> {
    let mut edges: Vec<(JobId, JobId, String)> = Vec::new();
    for chunk in ids.chunks(ID_CHUNK) {
        edges.extend(
            deps::table
                .filter(deps::job_id.eq_any(chunk))
                .select((deps::job_id, deps::depends_on_job_id, deps::on_failure))
                .load::<(JobId, JobId, String)>(conn)?,
        );
    }
    let prerequisites: Vec<JobId> = edges.iter().map(|(_, on, _)| *on).collect::<BTreeSet<_>>().into_iter().collect();
    let outcome = outcomes(conn, &prerequisites)?;
    let mut out: BTreeMap<JobId, Verdict> = ids.iter().map(|id| (*id, Verdict::Run)).collect();
    for (job, on, policy) in edges {
        let verdict = out.entry(job).or_insert(Verdict::Run);
        match outcome.get(&on).copied().flatten() {
            Some(Ending::Failed) if OnDependencyFailure::parse(&policy) == OnDependencyFailure::Cancel => {
                if !matches!(verdict, Verdict::Cancel(_)) {
                    *verdict = Verdict::Cancel(on);
                }
            }
            Some(_) => {}
            None => {
                if *verdict == Verdict::Run {
                    *verdict = Verdict::Wait;
                }
            }
        }
    }
    Ok(out)
}

/// Takes the verdict of every job waiting for one of `prerequisites` (which just ended) and
/// acts on it; returns the jobs it cancelled, which ended in turn.
fn resolve_dependants(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    prerequisites: &[JobId],
    now: NaiveDateTime,
) -> QueryResult<Vec<(JobId, Ending)>> {
    if prerequisites.is_empty() {
        return Ok(Vec::new());
    }
    let mut dependants = BTreeSet::new();
    for chunk in prerequisites.chunks(ID_CHUNK) {
        dependants.extend(
            deps::table.filter(deps::depends_on_job_id.eq_any(chunk)).select(deps::job_id).load::<JobId>(conn)?,
        );
    }
    let dependants: Vec<JobId> = dependants.into_iter().collect();
    Ok(resolve_waiting_jobs(dialect, conn, &dependants, now)?.1)
}

/// Locks the waiting jobs among `candidates` (in id order), takes their verdicts and acts on
/// them; returns how many it released and the jobs it cancelled (which ended in turn).
fn resolve_waiting_jobs(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    candidates: &[JobId],
    now: NaiveDateTime,
) -> QueryResult<(usize, Vec<(JobId, Ending)>)> {
    let mut candidates = candidates.to_vec();
    candidates.sort_unstable();
    candidates.dedup();
    // The lock comes before the prerequisites are read: of two transactions ending the last
    // two, the second reads after the first committed.
    let still_waiting = dialect.lock_waiting(conn, &candidates)?;
    if still_waiting.is_empty() {
        return Ok((0, Vec::new()));
    }
    let verdicts = verdicts(conn, &still_waiting)?;
    let mut run = Vec::new();
    let mut cancel: Vec<(JobId, JobId)> = Vec::new();
    for (id, verdict) in verdicts {
        match verdict {
            Verdict::Run => run.push(id),
            Verdict::Cancel(on) => cancel.push((id, on)),
            Verdict::Wait => {}
        }
    }
    // Whoever deletes the waiting row acts on it (another transaction may have, meanwhile).
    let run = take_waiting_rows(conn, &run)?;
    release_jobs(dialect, conn, &run, now)?;
    let mut cancelled = Vec::new();
    for (id, on) in cancel {
        if take_waiting_rows(conn, &[id])?.is_empty() {
            continue;
        }
        let error = FailureRecord::new(
            FailureKind::DependencyFailed,
            format!("cancelled without running: job {on}, which it depends on, failed, was discarded or cancelled"),
        );
        end_jobs(conn, &[id], EndState::Cancelled, Some(&error), now)?;
        cancelled.push((id, Ending::Failed));
    }
    Ok((run.len(), cancelled))
}

/// Deletes the waiting rows of `ids`; returns the ids whose row this call deleted.
fn take_waiting_rows(conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<Vec<JobId>> {
    let mut taken = Vec::new();
    for id in ids {
        if diesel::delete(waiting::table.filter(waiting::job_id.eq(*id))).execute(conn)? > 0 {
            taken.push(*id);
        }
    }
    Ok(taken)
}

/// Makes `ids` (out of the waiting table) ready, or scheduled if their time has not come,
/// through their concurrency limits.
fn release_jobs(dialect: &dyn Dialect, conn: &mut DbConnection, ids: &[JobId], now: NaiveDateTime) -> QueryResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    insert_executions(conn, ids, now)?;
    let due: Vec<JobId> = ready::table.filter(ready::job_id.eq_any(ids)).select(ready::job_id).load(conn)?;
    concurrency::admit(dialect, conn, &due, now)?;
    Ok(())
}

/// A row of `solidq_job_dependencies` (every column bound, so that SQLite takes many rows in
/// one INSERT).
#[derive(Insertable)]
#[diesel(table_name = deps, treat_none_as_default_value = false)]
struct Edge<'a> {
    job_id: JobId,
    depends_on_job_id: JobId,
    on_failure: &'a str,
}

/// A row of `solidq_waiting_executions`.
#[derive(Insertable)]
#[diesel(table_name = waiting, treat_none_as_default_value = false)]
struct WaitingRow {
    job_id: JobId,
    queue_name: String,
    priority: i32,
    created_at: At,
}

/// Inserts `rows` with multi-row INSERTs of at most `chunk` rows (written per backend:
/// diesel's MultiConnection has none).
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr, $chunk:expr) => {
        for chunk in $rows.chunks($chunk) {
            let insert = diesel::insert_into($table).values(chunk);
            match &mut *$conn {
                DbConnection::Sqlite(conn) => insert.execute(conn)?,
                DbConnection::Postgres(conn) => insert.execute(conn)?,
                #[cfg(feature = "mysql")]
                DbConnection::Mysql(conn) => insert.execute(conn)?,
            };
        }
    };
}

/// Makes each job of `waits`, just inserted with its execution, wait for its prerequisites in
/// the caller's transaction: the prerequisites are marked as having dependants (which locks
/// their rows: an end under way commits first, or sees the mark), the edges written, and the
/// jobs' verdicts taken at once. Many jobs take a few statements in all (a workflow's layer).
/// A prerequisite that does not exist is an error naming it.
pub(crate) fn wait_for_all(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    waits: &[(JobId, &[Dependency])],
    now: NaiveDateTime,
) -> QueryResult<()> {
    if waits.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<Edge<'_>> = Vec::new();
    for (id, after) in waits {
        let mut edges: BTreeMap<JobId, OnDependencyFailure> = BTreeMap::new();
        for dependency in after.iter() {
            // The stricter policy wins for an id given twice.
            let policy = edges.entry(dependency.job).or_insert(dependency.on_failure);
            if dependency.on_failure == OnDependencyFailure::Cancel {
                *policy = OnDependencyFailure::Cancel;
            }
        }
        rows.extend(edges.into_iter().map(|(on, policy)| Edge {
            job_id: *id,
            depends_on_job_id: on,
            on_failure: policy.as_str(),
        }));
    }
    let on: Vec<JobId> = rows.iter().map(|edge| edge.depends_on_job_id).collect::<BTreeSet<_>>().into_iter().collect();
    let mut marked = 0;
    for chunk in on.chunks(ID_CHUNK) {
        marked += diesel::update(jobs::table.filter(jobs::id.eq_any(chunk)))
            .set(jobs::has_dependants.eq(true))
            .execute(conn)?;
    }
    if marked < on.len() {
        let mut found: HashSet<JobId> = HashSet::new();
        for chunk in on.chunks(ID_CHUNK) {
            found.extend(jobs::table.filter(jobs::id.eq_any(chunk)).select(jobs::id).load::<JobId>(conn)?);
        }
        if let Some(edge) = rows.iter().find(|edge| !found.contains(&edge.depends_on_job_id)) {
            return Err(diesel::result::Error::QueryBuilderError(
                format!("job {} depends on job {}, which does not exist", edge.job_id, edge.depends_on_job_id).into(),
            ));
        }
    }
    insert_rows!(conn, deps::table, rows, 1_000);
    // Out of ready or scheduled (where the insert put them) into waiting; the verdicts then
    // decide as for any waiting job.
    let ids: Vec<JobId> = waits.iter().map(|(id, _)| *id).collect();
    let mut waiting_rows: Vec<WaitingRow> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(ID_CHUNK) {
        diesel::delete(ready::table.filter(ready::job_id.eq_any(chunk))).execute(conn)?;
        diesel::delete(scheduled::table.filter(scheduled::job_id.eq_any(chunk))).execute(conn)?;
        let found: Vec<(JobId, String, i32)> = jobs::table
            .filter(jobs::id.eq_any(chunk))
            .select((jobs::id, jobs::queue_name, jobs::priority))
            .load(conn)?;
        waiting_rows.extend(found.into_iter().map(|(job_id, queue_name, priority)| WaitingRow {
            job_id,
            queue_name,
            priority,
            created_at: at(now),
        }));
    }
    insert_rows!(conn, waiting::table, waiting_rows, 1_000);
    let (_, cancelled) = resolve_waiting_jobs(dialect, conn, &ids, now)?;
    jobs_ended(dialect, conn, &cancelled, now)
}

/// The jobs `id` waits for and the jobs waiting for it, with the policy of each edge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Dependencies {
    /// Jobs it runs after.
    pub depends_on: Vec<Dependency>,
    /// Jobs that run after it.
    pub dependants: Vec<Dependency>,
}

pub(crate) fn dependencies_of(conn: &mut DbConnection, id: JobId) -> QueryResult<Dependencies> {
    let depends_on = deps::table
        .filter(deps::job_id.eq(id))
        .order(deps::depends_on_job_id)
        .select((deps::depends_on_job_id, deps::on_failure))
        .load::<(JobId, String)>(conn)?;
    let dependants = deps::table
        .filter(deps::depends_on_job_id.eq(id))
        .order(deps::job_id)
        .select((deps::job_id, deps::on_failure))
        .load::<(JobId, String)>(conn)?;
    let edge = |(job, policy): (JobId, String)| Dependency { job, on_failure: OnDependencyFailure::parse(&policy) };
    Ok(Dependencies {
        depends_on: depends_on.into_iter().map(edge).collect(),
        dependants: dependants.into_iter().map(edge).collect(),
    })
}

/// The problem with batch `id` for adding jobs: `None` if it is open.
fn batch_problem(info: Option<&BatchInfo>, id: BatchId) -> Option<String> {
    match info {
        None => Some(format!("batch {id} does not exist")),
        Some(info) if info.is_finished() => Some(format!(
            "batch {id} has ended (its last job ended at {} UTC); jobs can be added only while one of its jobs has \
             not ended",
            info.finished_at.map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
        )),
        Some(_) => None,
    }
}

impl Store {
    /// Creates a batch of `members` with `batch`'s callbacks, in one transaction; returns its id
    /// and each member's id (for a unique job whose key was held: the holder's, not a member).
    /// An empty batch ends at once (its success and finish callbacks are enqueued).
    pub fn enqueue_batch(
        &self,
        batch: &NewBatch,
        members: &[NewJob],
        now: NaiveDateTime,
    ) -> StoreResult<(BatchId, Vec<Enqueued>)> {
        super::jobs::enqueue::check_jobs(members)?;
        for callback in [&batch.on_success, &batch.on_finish, &batch.on_failure].into_iter().flatten() {
            super::jobs::enqueue::check_jobs(std::slice::from_ref(callback))?;
        }
        self.check_prerequisites(members)?;
        self.check_database()?;
        let created =
            self.write("enqueueing a batch", |conn| create_batch(self.dialect(), conn, batch, members, now))?;
        self.jobs_ready();
        Ok(created)
    }

    /// Adds `members` to batch `id` while it is open (one of its jobs has not ended: a running
    /// member may add more); refused with [`StoreError::InvalidQuery`] once it has ended.
    pub fn add_to_batch(&self, id: BatchId, members: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<Enqueued>> {
        super::jobs::enqueue::check_jobs(members)?;
        self.check_prerequisites(members)?;
        let added = self.write("adding jobs to a batch", |conn| add_members(self.dialect(), conn, id, members, now))?;
        match added {
            Some(added) => {
                self.jobs_ready();
                Ok(added)
            }
            None => {
                let info = self.batch(id)?;
                Err(StoreError::InvalidQuery(
                    batch_problem(info.as_ref(), id).unwrap_or_else(|| format!("batch {id} is not open")),
                ))
            }
        }
    }

    /// Batch `id`, if it exists.
    pub fn batch(&self, id: BatchId) -> StoreResult<Option<BatchInfo>> {
        self.with_connection("reading a batch", |conn| {
            Ok(batches::table.find(id).select(batch_columns!()).first::<BatchRow>(conn).optional()?.map(batch_info))
        })
    }

    /// The batch job `job` belongs to, or whose callback it is.
    pub fn batch_of_job(&self, job: JobId) -> StoreResult<Option<BatchInfo>> {
        let batch: Option<Option<BatchId>> = self.with_connection("reading a job's batch", |conn| {
            jobs::table.find(job).select(jobs::batch_id).first(conn).optional()
        })?;
        match batch.flatten() {
            Some(batch) => self.batch(batch),
            None => Ok(None),
        }
    }

    /// The newest `limit` batches, newest first; `open_only`: those not ended.
    pub fn batches(&self, limit: i64, open_only: bool) -> StoreResult<Vec<BatchInfo>> {
        self.with_connection("listing batches", |conn| {
            let mut query = batches::table.select(batch_columns!()).order(batches::id.desc()).limit(limit).into_boxed();
            if open_only {
                query = query.filter(batches::finished_at.is_null());
            }
            Ok(query.load::<BatchRow>(conn)?.into_iter().map(batch_info).collect())
        })
    }

    /// The ids of batch `id`'s members (callbacks not included), in id order.
    pub fn batch_job_ids(&self, id: BatchId) -> StoreResult<Vec<JobId>> {
        let info = self.batch(id)?;
        let callbacks: HashSet<JobId> =
            info.iter().flat_map(|info| info.callbacks.iter().filter_map(|c| c.job)).collect();
        let ids: Vec<JobId> = self.with_connection("listing a batch's jobs", |conn| {
            jobs::table.filter(jobs::batch_id.eq(id)).order(jobs::id).select(jobs::id).load(conn)
        })?;
        Ok(ids.into_iter().filter(|id| !callbacks.contains(id)).collect())
    }

    /// Batch `id`'s first `limit` members (callbacks not included) with their states, in id
    /// order, for the dashboard's batch page.
    pub fn batch_members(&self, id: BatchId, limit: usize) -> StoreResult<Vec<JobRow>> {
        let ids: Vec<JobId> = self.batch_job_ids(id)?.into_iter().take(limit).collect();
        self.with_connection("reading a batch's jobs", |conn| {
            let mut rows = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(ID_CHUNK) {
                rows.extend(jobs_on(conn, chunk)?);
            }
            Ok(rows)
        })
    }

    /// The jobs `id` depends on and the jobs that depend on it.
    pub fn dependencies(&self, id: JobId) -> StoreResult<Dependencies> {
        self.with_connection("reading a job's dependencies", |conn| dependencies_of(conn, id))
    }

    /// Resolves waiting jobs whose prerequisites all ended (or one failed) but that still wait:
    /// a completion whose resolution was cut short by a crash. The dispatcher runs it now and
    /// then; returns how many jobs it made ready or cancelled.
    pub fn resolve_waiting(&self, now: NaiveDateTime) -> StoreResult<usize> {
        let candidates: Vec<JobId> = self.with_connection("listing waiting jobs", |conn| {
            waiting::table.order(waiting::job_id).select(waiting::job_id).limit(10_000).load(conn)
        })?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let settled =
            self.with_connection("reading waiting jobs' prerequisites", |conn| verdicts(conn, &candidates))?;
        let due: Vec<JobId> = settled.into_iter().filter(|(_, v)| *v != Verdict::Wait).map(|(id, _)| id).collect();
        if due.is_empty() {
            return Ok(0);
        }
        let resolved = self.write("resolving waiting jobs", |conn| {
            let (released, cancelled) = resolve_waiting_jobs(self.dialect(), conn, &due, now)?;
            jobs_ended(self.dialect(), conn, &cancelled, now)?;
            Ok(released + cancelled.len())
        })?;
        if resolved > 0 {
            self.jobs_ready();
        }
        Ok(resolved)
    }

    /// Refuses jobs that wait for jobs that do not exist, naming them.
    pub(crate) fn check_prerequisites(&self, jobs_: &[NewJob]) -> StoreResult<()> {
        let wanted: BTreeSet<JobId> = jobs_.iter().flat_map(|job| job.after.iter().map(|d| d.job)).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let wanted: Vec<JobId> = wanted.into_iter().collect();
        let found: HashSet<JobId> = self.with_connection("checking prerequisites", |conn| {
            let mut found = HashSet::new();
            for chunk in wanted.chunks(ID_CHUNK) {
                found.extend(jobs::table.filter(jobs::id.eq_any(chunk)).select(jobs::id).load::<JobId>(conn)?);
            }
            Ok(found)
        })?;
        if let Some(missing) = wanted.iter().find(|id| !found.contains(id)) {
            let job = jobs_.iter().find(|job| job.after.iter().any(|d| d.job == *missing));
            return Err(StoreError::InvalidJob {
                kind: job.map(|job| job.kind.clone()).unwrap_or_default(),
                problem: format!("it depends on job {missing}, which does not exist"),
            });
        }
        Ok(())
    }
}

/// One step of a workflow as the store enqueues it: the job, and the earlier steps (by index
/// in the list) it waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowStep {
    /// The job (its own `after` may name jobs outside the workflow).
    pub job: NewJob,
    /// Indexes of earlier steps it waits for, with the policy of each.
    pub after: Vec<(usize, OnDependencyFailure)>,
}

/// Enqueues `steps` (each after only earlier ones) in the caller's transaction; returns their
/// ids in order.
pub(crate) fn enqueue_workflow_on(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    steps: &[WorkflowStep],
    now: NaiveDateTime,
) -> QueryResult<Vec<JobId>> {
    // Each step's layer: one past its latest prerequisite's. A layer is enqueued at once (its
    // prerequisites all exist by then), so a workflow costs a few statements per layer, not
    // per step.
    let mut layers: Vec<usize> = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        let mut layer = 0;
        for (on, _) in &step.after {
            let before = layers.get(*on).copied().filter(|_| *on < index).ok_or_else(|| {
                diesel::result::Error::QueryBuilderError(
                    format!("workflow step {index} waits for step {on}, which does not come before it").into(),
                )
            })?;
            layer = layer.max(before + 1);
        }
        layers.push(layer);
    }
    let mut ids: Vec<Option<JobId>> = vec![None; steps.len()];
    for layer in 0..=layers.iter().copied().max().unwrap_or(0) {
        let members: Vec<usize> = (0..steps.len()).filter(|&index| layers[index] == layer).collect();
        let mut jobs_: Vec<NewJob> = Vec::with_capacity(members.len());
        for &index in &members {
            let mut job = steps[index].job.clone();
            for (on, on_failure) in &steps[index].after {
                let job_id = ids[*on].ok_or(diesel::result::Error::NotFound)?;
                job.after.push(Dependency { job: job_id, on_failure: *on_failure });
            }
            jobs_.push(job);
        }
        let enqueued = super::jobs::enqueue::enqueue_with_options(dialect, conn, &jobs_, now)?;
        if enqueued.len() != members.len() {
            return Err(diesel::result::Error::NotFound);
        }
        for (&index, enqueued) in members.iter().zip(enqueued) {
            ids[index] = Some(enqueued.id());
        }
    }
    ids.into_iter().map(|id| id.ok_or(diesel::result::Error::NotFound)).collect()
}

impl Store {
    /// Enqueues the steps of a workflow in one transaction (see [`WorkflowStep`]); returns their
    /// ids in order. The typed builder is [`Workflow`](crate::Workflow).
    pub fn enqueue_workflow(&self, steps: &[WorkflowStep], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        let jobs_: Vec<NewJob> = steps.iter().map(|step| step.job.clone()).collect();
        super::jobs::enqueue::check_jobs(&jobs_)?;
        self.check_prerequisites(&jobs_)?;
        self.check_database()?;
        let ids = self.write("enqueueing a workflow", |conn| enqueue_workflow_on(self.dialect(), conn, steps, now))?;
        self.jobs_ready();
        Ok(ids)
    }
}

/// Creates a batch on the application's own connection, inside its transaction (a savepoint
/// if one is open): the batch and its jobs exist only if that transaction commits.
pub fn enqueue_batch_in(
    conn: &mut DbConnection,
    batch: &NewBatch,
    members: &[NewJob],
    now: NaiveDateTime,
) -> StoreResult<(BatchId, Vec<Enqueued>)> {
    super::jobs::enqueue::check_jobs(members)?;
    if let DbConnection::Sqlite(conn) = conn {
        super::connection::refuse_writes_if_moved(conn)?;
    }
    let dialect = super::jobs::enqueue::sql_dialect(conn);
    conn.transaction(|conn| create_batch(dialect.as_ref(), conn, batch, members, now))
        .map_err(StoreError::query("enqueueing a batch"))
}

/// Enqueues a workflow on the application's own connection, inside its transaction.
pub fn enqueue_workflow_in(
    conn: &mut DbConnection,
    steps: &[WorkflowStep],
    now: NaiveDateTime,
) -> StoreResult<Vec<JobId>> {
    let jobs_: Vec<NewJob> = steps.iter().map(|step| step.job.clone()).collect();
    super::jobs::enqueue::check_jobs(&jobs_)?;
    if let DbConnection::Sqlite(conn) = conn {
        super::connection::refuse_writes_if_moved(conn)?;
    }
    let dialect = super::jobs::enqueue::sql_dialect(conn);
    conn.transaction(|conn| enqueue_workflow_on(dialect.as_ref(), conn, steps, now))
        .map_err(StoreError::query("enqueueing a workflow"))
}
