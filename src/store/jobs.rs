//! Jobs: enqueue, claim, and the transitions of claimed jobs.
//!
//! Every transition takes a batch of claim tokens and runs in one transaction: the claims that
//! still exist are deleted first (the deletion decides, see `Dialect::take_claims`), the
//! jobs behind them change, and the tokens whose claims were gone are reported as fenced
//! (their process was found dead and the job handed back, perhaps claimed elsewhere): nothing
//! changed for those.
//!

use std::collections::{BTreeSet, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::Timestamp;
use serde::Serialize;

use super::connection::DbConnection;
use super::dialect::{Dialect, HotPath};
use super::schema::{
    solidq_failed_executions as failed, solidq_jobs as jobs, solidq_ready_executions as ready,
    solidq_scheduled_executions as scheduled,
};
use super::{Store, StoreResult};
use crate::lifecycle::Transition;
use crate::model::{ClaimToken, ClaimedJob, Enqueued, FailureRecord, JobId, NewJob, ProcessId, QueuePattern};

/// Inserts `new_jobs`, some with a unique key or a concurrency limit, in the caller's
/// transaction: the plain ones in one go, the others one at a time: a job whose unique key
/// is held returns the holder's id; a job with a concurrency limit goes through it.
pub(crate) fn enqueue_with_options(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    new_jobs: &[NewJob],
    now: NaiveDateTime,
) -> QueryResult<Vec<Enqueued>> {
    let mut out: Vec<Enqueued> = Vec::with_capacity(new_jobs.len());
    // Runs of plain jobs in one insert each, the others one at a time: ids keep input order.
    let mut rest = new_jobs;
    while !rest.is_empty() {
        let plain = rest.iter().take_while(|job| !job.has_options()).count();
        if plain > 0 {
            out.extend(dialect.enqueue(conn, &rest[..plain], now)?.into_iter().map(Enqueued::New));
            rest = &rest[plain..];
            continue;
        }
        let job = &rest[0];
        rest = &rest[1..];
        if let Some(key) = &job.unique_key {
            let holder: Option<JobId> =
                jobs::table.filter(jobs::unique_key.eq(key)).select(jobs::id).first(conn).optional()?;
            if let Some(holder) = holder {
                out.push(Enqueued::Existing(holder));
                continue;
            }
        }
        let id = dialect
            .enqueue(conn, std::slice::from_ref(job), now)?
            .first()
            .copied()
            .ok_or(diesel::result::Error::NotFound)?;
        let limit = job.concurrency.as_ref();
        diesel::update(jobs::table.find(id))
            .set((
                jobs::unique_key.eq(&job.unique_key),
                jobs::concurrency_key.eq(limit.map(|l| l.key.as_str())),
                jobs::concurrency_limit.eq(limit.map(|l| l.limit)),
                jobs::concurrency_duration_ms
                    .eq(limit.map(|l| i64::try_from(l.duration.as_millis()).unwrap_or(i64::MAX))),
                jobs::concurrency_on_conflict.eq(limit.map(|l| l.on_conflict.as_str())),
            ))
            .execute(conn)?;
        if limit.is_some() && job.scheduled_at.is_none_or(|at| at <= now) {
            super::concurrency::admit(dialect, conn, &[id], now)?;
        }
        out.push(Enqueued::New(id));
    }
    Ok(out)
}

/// Ids bound per statement when a list of ids is sent (SQLite binds each one).
pub(crate) const ID_CHUNK: usize = 5_000;

/// A connection on which jobs can be enqueued inside the caller's own transaction: the jobs
/// exist only if that transaction commits.
///
/// Implemented for diesel's `SqliteConnection` and `PgConnection`; used by
/// [`Queue::enqueue_in`](crate::Queue::enqueue_in).
pub trait EnqueueConnection {
    /// Inserts `jobs` and their executions on this connection (in a savepoint when a
    /// transaction is open); returns the new ids in the order given.
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>>;
}

/// Enqueues `jobs` on a bare backend connection with `insert` (the dialect's insert, in a
/// savepoint of the caller's transaction), after the checks every enqueue makes. Jobs with a
/// unique key or a concurrency limit are refused here: they need solidq's `DbConnection`.
pub(crate) fn enqueue_plain<C: Connection>(
    conn: &mut C,
    jobs: &[NewJob],
    insert: impl FnOnce(&mut C) -> QueryResult<Vec<JobId>>,
) -> StoreResult<Vec<JobId>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    super::check_jobs(jobs)?;
    super::check_plain(jobs)?;
    conn.transaction(insert).map_err(super::StoreError::query("enqueueing jobs"))
}

impl EnqueueConnection for DbConnection {
    /// Jobs with a unique key or a concurrency limit go through them here too, in a savepoint
    /// of the caller's transaction (the raw `SqliteConnection` and `PgConnection` refuse them).
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        if jobs.iter().any(NewJob::has_options) {
            super::check_jobs(jobs)?;
            if let DbConnection::Sqlite(conn) = self {
                super::dialect::sqlite::refuse_if_moved(conn)?;
            }
            // Only the dialect's SQL is used, none of its state (files, sessions).
            let dialect: Box<dyn Dialect> = match self {
                DbConnection::Sqlite(_) => Box::new(super::dialect::sqlite::Sqlite::sql_only()),
                DbConnection::Postgres(_) => Box::new(super::dialect::postgres::Postgres::new(String::new())),
            };
            let enqueued = self
                .transaction(|conn| enqueue_with_options(dialect.as_ref(), conn, jobs, now))
                .map_err(super::StoreError::query("enqueueing jobs"))?;
            return Ok(enqueued.into_iter().map(Enqueued::id).collect());
        }
        match self {
            DbConnection::Sqlite(conn) => conn.enqueue_jobs(jobs, now),
            DbConnection::Postgres(conn) => conn.enqueue_jobs(jobs, now),
        }
    }
}

/// A pooled connection enqueues as the connection it holds, so that code written with an r2d2
/// pool (`conn.transaction(|conn| Queue::enqueue_in(conn, …))`) compiles as is.
impl<M> EnqueueConnection for diesel::r2d2::PooledConnection<M>
where
    M: diesel::r2d2::ManageConnection,
    M::Connection: EnqueueConnection,
{
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        (**self).enqueue_jobs(jobs, now)
    }
}

/// Which claims of a batch a transition changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Settled {
    /// Claims that were still this process's: their jobs changed.
    pub applied: Vec<ClaimToken>,
    /// Claims that were gone (reaped, released): nothing changed for them.
    pub fenced: Vec<ClaimToken>,
}

impl Settled {
    /// Whether `token` was applied.
    pub fn applied(&self, token: &ClaimToken) -> bool {
        self.applied.contains(token)
    }
}

/// A row of `solidq_jobs` to insert (every column bound, so SQLite gets one multi-row INSERT).
#[derive(Insertable)]
#[diesel(table_name = jobs, treat_none_as_default_value = false)]
pub(crate) struct JobInsert<'a> {
    queue_name: &'a str,
    class_name: &'a str,
    arguments: &'a str,
    priority: i32,
    attempts: i32,
    max_attempts: i32,
    scheduled_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl<'a> JobInsert<'a> {
    /// Bind parameters per row.
    const BINDS: usize = 9;

    pub(crate) fn new(job: &'a NewJob, now: NaiveDateTime) -> Self {
        JobInsert {
            queue_name: &job.queue,
            class_name: &job.kind,
            arguments: &job.arguments,
            priority: job.priority,
            attempts: 0,
            max_attempts: job.max_attempts,
            scheduled_at: job.scheduled_at,
            created_at: now,
            updated_at: now,
        }
    }

    /// Rows per INSERT for a backend allowing `max_binds` bind parameters per statement.
    pub(crate) fn rows_per_statement(max_binds: usize) -> usize {
        (max_binds / Self::BINDS).max(1)
    }
}

/// What a claim asks for: up to `limit` ready jobs of `kinds` on `queues` (in that order) for
/// `process`, at `now`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    pub(crate) process: ProcessId,
    pub(crate) queues: &'a [QueuePattern],
    pub(crate) kinds: &'a [String],
    pub(crate) limit: usize,
    pub(crate) now: NaiveDateTime,
}

/// A LIKE pattern matching every string that starts with `prefix`, with `\` as escape.
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// When a job delayed by `delay` from `now` runs: no later than the latest time the store
/// keeps ordered on every backend.
fn run_at(now: NaiveDateTime, delay: std::time::Duration) -> NaiveDateTime {
    let latest = crate::model::latest_schedule();
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|delay| now.checked_add_signed(delay))
        .map_or(latest, |at| at.min(latest))
}

/// Inserts ready executions for `ids` (whatever their scheduled_at); returns how many.
pub(crate) fn insert_ready(conn: &mut DbConnection, ids: &[JobId], now: NaiveDateTime) -> QueryResult<usize> {
    let mut inserted = 0;
    for chunk in ids.chunks(ID_CHUNK) {
        inserted += diesel::insert_into(ready::table)
            .values(jobs::table.filter(jobs::id.eq_any(chunk)).select((
                jobs::id,
                jobs::queue_name,
                jobs::priority,
                now.into_sql::<Timestamp>(),
                jobs::class_name,
            )))
            .into_columns((ready::job_id, ready::queue_name, ready::priority, ready::created_at, ready::class_name))
            .execute(conn)?;
    }
    Ok(inserted)
}

/// Inserts a ready execution for each of `ids` due at `now` and a scheduled one for the rest,
/// reading queue, priority and time from the job rows.
pub(crate) fn insert_executions(conn: &mut DbConnection, ids: &[JobId], now: NaiveDateTime) -> QueryResult<()> {
    for chunk in ids.chunks(ID_CHUNK) {
        diesel::insert_into(ready::table)
            .values(
                jobs::table
                    .filter(jobs::id.eq_any(chunk))
                    .filter(jobs::scheduled_at.is_null().or(jobs::scheduled_at.le(now)))
                    .select((
                        jobs::id,
                        jobs::queue_name,
                        jobs::priority,
                        now.into_sql::<Timestamp>(),
                        jobs::class_name,
                    )),
            )
            .into_columns((ready::job_id, ready::queue_name, ready::priority, ready::created_at, ready::class_name))
            .execute(conn)?;
        diesel::insert_into(scheduled::table)
            .values(jobs::table.filter(jobs::id.eq_any(chunk)).filter(jobs::scheduled_at.gt(now)).select((
                jobs::id,
                jobs::queue_name,
                jobs::priority,
                jobs::scheduled_at.assume_not_null(),
                now.into_sql::<Timestamp>(),
            )))
            .into_columns((
                scheduled::job_id,
                scheduled::queue_name,
                scheduled::priority,
                scheduled::scheduled_at,
                scheduled::created_at,
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Returns jobs whose claims were just taken to ready without counting an attempt: they were
/// never started, or a graceful drain cut them short.
pub(crate) fn hand_back(conn: &mut DbConnection, ids: &[JobId], now: NaiveDateTime) -> QueryResult<usize> {
    insert_ready(conn, ids, now)
}

/// Counts one more attempt for each of `ids` (an execution ended or its process died).
pub(crate) fn count_attempt(conn: &mut DbConnection, ids: &[JobId], now: NaiveDateTime) -> QueryResult<()> {
    for chunk in ids.chunks(ID_CHUNK) {
        diesel::update(jobs::table.filter(jobs::id.eq_any(chunk)))
            .set((jobs::attempts.eq(jobs::attempts + 1), jobs::updated_at.eq(now)))
            .execute(conn)?;
    }
    Ok(())
}

/// Marks the jobs `ids` (their claims just taken) finished at `now`, their attempt counted and
/// their unique keys given up; returns the concurrency keys they held.
pub(crate) fn mark_finished(
    conn: &mut DbConnection,
    ids: &[JobId],
    now: NaiveDateTime,
) -> QueryResult<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let query = diesel::update(jobs::table.filter(jobs::id.eq_any(chunk))).set((
            jobs::finished_at.eq(now),
            jobs::updated_at.eq(now),
            jobs::attempts.eq(jobs::attempts + 1),
            jobs::unique_key.eq(None::<String>),
        ));
        match conn {
            // One statement on SQLite too: the keys come back with the update.
            DbConnection::Sqlite(conn) => {
                keys.extend(query.returning(jobs::concurrency_key).load::<Option<String>>(conn)?.into_iter().flatten())
            }
            DbConnection::Postgres(_) => {
                query.execute(conn)?;
                keys.extend(super::concurrency::keys_of(conn, chunk)?);
            }
        }
    }
    Ok(keys)
}

/// Ends the jobs `ids` (out of every execution table already) as `end_state`
/// (`discarded` or `cancelled`) at `now`, with `error` as their last error if given; their
/// unique keys are given up.
pub(crate) fn end_jobs(
    conn: &mut DbConnection,
    ids: &[JobId],
    end_state: &str,
    error: Option<&FailureRecord>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let error = error.map(FailureRecord::to_json);
    for chunk in ids.chunks(ID_CHUNK) {
        let target = jobs::table.filter(jobs::id.eq_any(chunk));
        let ended = (
            jobs::finished_at.eq(now),
            jobs::end_state.eq(end_state),
            jobs::unique_key.eq(None::<String>),
            jobs::updated_at.eq(now),
        );
        match &error {
            Some(error) => diesel::update(target).set((ended, jobs::last_error.eq(error))).execute(conn)?,
            None => diesel::update(target).set(ended).execute(conn)?,
        };
    }
    Ok(())
}

/// Applies `transitions` to jobs whose claims were just taken, then lets in the blocked jobs
/// their concurrency keys allow. A job whose cancel was asked for while it ran ends as
/// cancelled instead of running again.
pub(crate) fn apply(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    transitions: &[(JobId, &Transition)],
    now: NaiveDateTime,
) -> QueryResult<()> {
    if transitions.is_empty() {
        return Ok(());
    }
    let ids: Vec<JobId> = transitions.iter().map(|(id, _)| *id).collect();
    let cancel_requested: HashSet<JobId> = jobs::table
        .filter(jobs::id.eq_any(&ids))
        .filter(jobs::cancel_requested_at.is_not_null())
        .select(jobs::id)
        .load::<JobId>(conn)?
        .into_iter()
        .collect();
    let mut complete = Vec::new();
    let mut release = Vec::new();
    let mut again = Vec::new();
    let mut snoozed = Vec::new();
    let mut cancelled = Vec::new();
    for (job_id, transition) in transitions {
        let ends = matches!(transition, Transition::Complete | Transition::Fail(_) | Transition::Discard(_));
        if cancel_requested.contains(job_id) && !ends {
            // An execution that ran counts its attempt; one released unstarted or snoozed
            // does not.
            if matches!(transition, Transition::Retry(..) | Transition::Cancel) {
                count_attempt(conn, &[*job_id], now)?;
            }
            cancelled.push(*job_id);
            continue;
        }
        match transition {
            Transition::Complete => complete.push(*job_id),
            Transition::Release => release.push(*job_id),
            Transition::Retry(error, delay) => {
                diesel::update(jobs::table.find(job_id))
                    .set((
                        jobs::attempts.eq(jobs::attempts + 1),
                        jobs::last_error.eq(error.to_json()),
                        jobs::scheduled_at.eq(run_at(now, *delay)),
                        jobs::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                again.push(*job_id);
            }
            Transition::Fail(error) => fail_one(conn, *job_id, error, now)?,
            Transition::Snooze(delay) => {
                diesel::update(jobs::table.find(job_id))
                    .set((jobs::scheduled_at.eq(run_at(now, *delay)), jobs::updated_at.eq(now)))
                    .execute(conn)?;
                snoozed.push(*job_id);
            }
            Transition::Discard(error) => {
                count_attempt(conn, &[*job_id], now)?;
                end_jobs(conn, &[*job_id], "discarded", Some(error), now)?;
            }
            Transition::Cancel => {
                // The handler ran (and was told to stop): the attempt counts.
                count_attempt(conn, &[*job_id], now)?;
                cancelled.push(*job_id);
            }
        }
    }
    mark_finished(conn, &complete, now)?;
    hand_back(conn, &release, now)?;
    insert_executions(conn, &again, now)?;
    insert_executions(conn, &snoozed, now)?;
    end_jobs(conn, &cancelled, "cancelled", None, now)?;
    let keys = super::concurrency::keys_of(conn, &ids)?;
    super::concurrency::release_keys(dialect, conn, &keys, now)?;
    Ok(())
}

/// Moves one job (its claim already taken) to failed with `error`, its attempt counted and
/// its unique key given up.
fn fail_one(conn: &mut DbConnection, job_id: JobId, error: &FailureRecord, now: NaiveDateTime) -> QueryResult<()> {
    insert_failed(conn, job_id, error, now)?;
    diesel::update(jobs::table.find(job_id))
        .set((
            jobs::attempts.eq(jobs::attempts + 1),
            jobs::last_error.eq(error.to_json()),
            jobs::unique_key.eq(None::<String>),
            jobs::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// The failed execution of `job_id`, with `error` in typed columns.
pub(crate) fn insert_failed(
    conn: &mut DbConnection,
    job_id: JobId,
    error: &FailureRecord,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(failed::table)
        .values((
            failed::job_id.eq(job_id),
            failed::error_kind.eq(error.kind.as_str()),
            failed::message.eq(&error.message),
            failed::backtrace.eq(&error.backtrace),
            failed::cause.eq(&error.cause),
            failed::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

impl Store {
    /// Inserts `jobs` (one multi-row INSERT per chunk) and their ready or scheduled executions
    /// in one transaction; returns the new ids in the order given.
    pub fn enqueue(&self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        Ok(self.enqueue_reporting(jobs, now)?.into_iter().map(|enqueued| enqueued.id()).collect())
    }

    /// [`Store::enqueue`], telling for each job whether it was inserted or a job with its
    /// unique key already existed (whose id it returns instead). Jobs with a concurrency limit
    /// over their limit are inserted as blocked (or discarded, if their kind says so).
    pub fn enqueue_reporting(&self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<Enqueued>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        super::check_jobs(jobs)?;
        self.check_database()?;
        let enqueued = if jobs.iter().any(NewJob::has_options) {
            self.write("enqueueing jobs", |conn| enqueue_with_options(self.dialect(), conn, jobs, now))?
        } else {
            let transaction = !self.dialect().one_statement(HotPath::Enqueue(jobs.len()));
            let ids = self.write_as("enqueueing jobs", transaction, |conn| self.dialect().enqueue(conn, jobs, now))?;
            ids.into_iter().map(Enqueued::New).collect()
        };
        if jobs.iter().any(|job| job.scheduled_at.is_none_or(|at| at <= now)) {
            self.jobs_ready();
        }
        Ok(enqueued)
    }

    /// Claims up to `limit` ready jobs of the given `kinds` (those the process has handlers
    /// for) for `process`, taking queues in the order of `queues`, then priority, then job id,
    /// and counts each claimed job's attempt. Claims nothing if the process row does not exist.
    /// A job of another kind stays ready for a process that can run it.
    pub fn claim(
        &self,
        process: ProcessId,
        queues: &[QueuePattern],
        kinds: &[String],
        limit: usize,
        now: NaiveDateTime,
    ) -> StoreResult<Vec<ClaimedJob>> {
        if limit == 0 || queues.is_empty() || kinds.is_empty() {
            return Ok(Vec::new());
        }
        let claim = Claim { process, queues, kinds, limit, now };
        let transaction = !self.dialect().one_statement(HotPath::Claim(&claim));
        if transaction && self.last_claim_empty.load(std::sync::atomic::Ordering::Relaxed) {
            // After an empty claim, one read before a write transaction (on SQLite, the file's
            // write lock): an idle worker's poll then takes no lock from the other processes on
            // the file. Busy workers (whose last claim found jobs) skip it.
            let any_ready = self.with_connection("looking for ready jobs", |conn| {
                diesel::select(diesel::dsl::exists(ready::table.filter(ready::class_name.eq_any(kinds))))
                    .get_result::<bool>(conn)
            })?;
            if !any_ready {
                return Ok(Vec::new());
            }
        }
        let claimed = self.write_unmarked("claiming jobs", transaction, |conn| self.dialect().claim(conn, &claim))?;
        self.last_claim_empty.store(claimed.is_empty(), std::sync::atomic::Ordering::Relaxed);
        self.count_claimed(claimed.len());
        Ok(claimed)
    }

    /// Writes each claim's transition, in one transaction, for the claims that are still
    /// this process's.
    pub fn record(&self, batch: &[(ClaimToken, Transition)], now: NaiveDateTime) -> StoreResult<Settled> {
        if batch.is_empty() {
            return Ok(Settled::default());
        }
        // Completions, the common case, go through the dialect's one-statement path; the other
        // transitions take their claims and change their jobs beside them.
        let (complete, other): (Vec<_>, Vec<_>) =
            batch.iter().partition(|(_, transition)| matches!(transition, Transition::Complete));
        let complete: Vec<ClaimToken> = complete.iter().map(|(token, _)| *token).collect();
        let other: Vec<ClaimToken> = other.iter().map(|(token, _)| *token).collect();
        let transaction = !other.is_empty() || !self.dialect().one_statement(HotPath::Complete);
        let (settled, finished_keys) = self.write_as("recording job outcomes", transaction, |conn| {
            let mut taken: HashSet<ClaimToken> = HashSet::with_capacity(batch.len());
            let mut finished_keys = BTreeSet::new();
            if !complete.is_empty() {
                let (completed, keys) = self.dialect().complete_claims(conn, &complete, now)?;
                taken.extend(completed);
                finished_keys = keys;
            }
            if !other.is_empty() {
                taken.extend(self.dialect().take_claims(conn, &other)?);
            }
            let mut settled = Settled::default();
            let mut transitions = Vec::with_capacity(taken.len());
            for (token, transition) in batch {
                if taken.contains(token) {
                    settled.applied.push(*token);
                    if !matches!(transition, Transition::Complete) {
                        transitions.push((token.job_id, transition));
                    }
                } else {
                    settled.fenced.push(*token);
                }
            }
            apply(self.dialect(), conn, &transitions, now)?;
            if transaction {
                super::concurrency::release_keys(self.dialect(), conn, &finished_keys, now)?;
                finished_keys.clear();
            }
            Ok((settled, finished_keys))
        })?;
        // Finished jobs held concurrency keys: let the next blocked jobs in (the finish was one
        // statement outside a transaction; a crash in between is caught by the dispatcher's
        // sweep of blocked keys).
        if !finished_keys.is_empty() {
            self.write("releasing concurrency keys", |conn| {
                super::concurrency::release_keys(self.dialect(), conn, &finished_keys, now)
            })?;
            self.jobs_ready();
        }
        // A release or an immediate retry made a job ready again.
        if !other.is_empty() && settled.applied.len() > complete.len() {
            self.jobs_ready();
        }
        Ok(settled)
    }

    /// Marks the jobs of `tokens` finished.
    pub fn complete(&self, tokens: &[ClaimToken], now: NaiveDateTime) -> StoreResult<Settled> {
        self.record(&tokens.iter().map(|token| (*token, Transition::Complete)).collect::<Vec<_>>(), now)
    }

    /// Records `error` as each job's last error and runs it again at `run_at` (ready at once
    /// if `run_at <= now`); the attempt stays counted.
    pub fn retry(
        &self,
        tokens: &[ClaimToken],
        error: &FailureRecord,
        run_at: NaiveDateTime,
        now: NaiveDateTime,
    ) -> StoreResult<Settled> {
        let delay = (run_at - now).to_std().unwrap_or_default();
        let transition = Transition::Retry(error.clone(), delay);
        self.record(&tokens.iter().map(|token| (*token, transition.clone())).collect::<Vec<_>>(), now)
    }

    /// Moves the jobs to failed with `error`.
    pub fn fail(&self, tokens: &[ClaimToken], error: &FailureRecord, now: NaiveDateTime) -> StoreResult<Settled> {
        let transition = Transition::Fail(error.clone());
        self.record(&tokens.iter().map(|token| (*token, transition.clone())).collect::<Vec<_>>(), now)
    }

    /// Returns the jobs to ready and gives back the attempt each claim counted: they were
    /// never started (a claim handed back unstarted, a handler that was not running), or a
    /// graceful drain cut their run short. Only a process death counts an attempt without an
    /// outcome.
    pub fn release(&self, tokens: &[ClaimToken], now: NaiveDateTime) -> StoreResult<Settled> {
        self.record(&tokens.iter().map(|token| (*token, Transition::Release)).collect::<Vec<_>>(), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_inserted_with_one_statement_on_both_backends() {
        let now = chrono::DateTime::from_timestamp(0, 0).unwrap().naive_utc();
        let new_jobs: Vec<NewJob> = (0..3)
            .map(|i| NewJob {
                kind: "k".into(),
                arguments: "{}".into(),
                queue: "q".into(),
                priority: 0,
                max_attempts: 1,
                scheduled_at: (i == 1).then_some(now),
                unique_key: None,
                concurrency: None,
            })
            .collect();
        let rows: Vec<JobInsert<'_>> = new_jobs.iter().map(|job| JobInsert::new(job, now)).collect();
        let query = diesel::insert_into(jobs::table).values(&rows);
        let sqlite = diesel::debug_query::<diesel::sqlite::Sqlite, _>(&query).to_string();
        let pg = diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string();
        for sql in [sqlite, pg] {
            assert_eq!(sql.matches("INSERT INTO").count(), 1, "{sql}");
            assert_eq!(sql.matches("), (").count(), 2, "{sql}");
            assert!(!sql.contains("DEFAULT"), "{sql}");
        }
    }

    #[test]
    fn like_prefix_escapes_wildcards_and_the_escape_character() {
        assert_eq!(like_prefix("reports"), "reports%");
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}
