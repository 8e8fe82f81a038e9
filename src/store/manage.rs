//! What an operator does to jobs and queues: retry, discard and cancel jobs (one at a time or
//! in batches), pause and resume queues, clear old finished jobs; and the cancel requests a
//! process reads for the jobs it runs.
//!
//! Every action on a job decides by deleting the execution row that holds it, so a job that
//! moved meanwhile (claimed by a worker, say) is seen in its new state and the action is
//! judged again, never applied to a state the job left. Bulk actions work in batches of
//! [`ACTION_BATCH`] jobs, one short transaction each.

use chrono::NaiveDateTime;
use diesel::dsl::{count_star, min};
use diesel::prelude::*;

use crate::store::sql_types::at;
use serde::Serialize;

use super::composition::{self, Ending};
use super::concurrency;
use super::connection::DbConnection;
use super::dialect::{take_ids, Dialect};
use super::executions::{end_jobs, insert_ready, keys_of, EndState};
use super::inspect::{job_ids_on, jobs_on, JobFilter};
use super::schema::{
    solidq_batches as batches, solidq_blocked_executions as blocked, solidq_claimed_executions as claimed,
    solidq_failed_executions as failed, solidq_jobs as jobs, solidq_pauses as pauses, solidq_ready_executions as ready,
    solidq_scheduled_executions as scheduled, solidq_waiting_executions as waiting,
};
use super::{Store, StoreError, StoreResult};
use crate::model::{JobId, JobState, ProcessId};

/// Jobs per transaction of a bulk action.
pub const ACTION_BATCH: usize = 500;

/// Why an action on one job was not taken. `Debug` prints the same text as `Display`.
#[derive(thiserror::Error)]
pub enum ActionError {
    /// No job has this id.
    #[error("job {0} does not exist")]
    NotFound(JobId),
    /// The job is in a state the action does not apply to.
    #[error("job {id} is {state}: {why}")]
    WrongState {
        /// The job.
        id: JobId,
        /// Its state.
        state: JobState,
        /// What to do instead.
        why: &'static str,
    },
    /// The job changed state under every attempt (workers kept claiming and releasing it).
    #[error("job {0} kept changing state while the action was under way; try again")]
    KeptMoving(JobId),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl std::fmt::Debug for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// What [`Store::cancel_job`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cancelled {
    /// The job was waiting (scheduled, ready or blocked) and is cancelled.
    Now,
    /// The job is running: its process tells the handler (through
    /// [`JobMeta`](crate::JobMeta)'s cancellation) and the job ends as cancelled when the
    /// handler returns.
    Requested,
}

/// One queue as `solidq queues list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueRow {
    /// Queue name.
    pub name: String,
    /// Jobs ready to run.
    pub ready: i64,
    /// Jobs waiting for their time.
    pub scheduled: i64,
    /// Jobs running.
    pub claimed: i64,
    /// Jobs waiting for their concurrency key.
    pub blocked: i64,
    /// Jobs waiting for the jobs they run after (workflows).
    pub waiting: i64,
    /// How long the oldest ready job has waited, in seconds (0 without ready jobs).
    pub latency_seconds: f64,
    /// Whether workers skip the queue.
    pub paused: bool,
}

/// Outcome of one attempt at an action, inside its transaction.
enum Step<T> {
    Done(T),
    /// The job moved while the action was under way: read it again.
    Moved,
}

/// Where job `id` is, read in an action's transaction.
enum Found {
    /// No such job.
    Missing,
    /// Between two execution tables (another transaction is moving it): try again.
    Moving,
    /// In this state.
    At(JobState),
}

impl Found {
    fn of(conn: &mut DbConnection, id: JobId) -> QueryResult<Found> {
        Ok(match jobs_on(conn, &[id])?.pop() {
            None => Found::Missing,
            Some(row) => row.state.map_or(Found::Moving, Found::At),
        })
    }
}

/// Deletes the execution row that holds `id` in `state`; whether it was still there.
fn take_at_rest(conn: &mut DbConnection, id: JobId, state: JobState) -> QueryResult<bool> {
    let deleted = match state {
        JobState::Ready => diesel::delete(ready::table.filter(ready::job_id.eq(id))).execute(conn)?,
        JobState::Scheduled => diesel::delete(scheduled::table.filter(scheduled::job_id.eq(id))).execute(conn)?,
        JobState::Blocked => diesel::delete(blocked::table.filter(blocked::job_id.eq(id))).execute(conn)?,
        JobState::Waiting => diesel::delete(waiting::table.filter(waiting::job_id.eq(id))).execute(conn)?,
        JobState::Failed => diesel::delete(failed::table.filter(failed::job_id.eq(id))).execute(conn)?,
        _ => 0,
    };
    Ok(deleted > 0)
}

/// Ends jobs just taken from their executions in `state` (an operator's discard or cancel):
/// stamps their end, lets in the jobs their concurrency keys held back, and counts them on
/// their batches and dependants as failed, unless they were failed jobs, whose end was counted
/// when they failed.
pub(super) fn end_taken(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    ids: &[JobId],
    state: JobState,
    end: EndState,
    now: NaiveDateTime,
) -> QueryResult<()> {
    end_jobs(conn, ids, end, None, now)?;
    let keys = keys_of(conn, ids)?;
    concurrency::release_keys(dialect, conn, &keys, now)?;
    if state != JobState::Failed {
        let ended: Vec<(JobId, Ending)> = ids.iter().map(|id| (*id, Ending::Failed)).collect();
        composition::jobs_ended(dialect, conn, &ended, now)?;
    }
    Ok(())
}

impl Store {
    /// Ends waiting job `id` (in `state`) as `end`, letting in the jobs its concurrency key
    /// held back; whether it was still there.
    fn end_at_rest(
        &self,
        conn: &mut DbConnection,
        id: JobId,
        state: JobState,
        end: EndState,
        now: NaiveDateTime,
    ) -> QueryResult<bool> {
        if !take_at_rest(conn, id, state)? {
            return Ok(false);
        }
        end_taken(self.dialect(), conn, &[id], state, end, now)?;
        Ok(true)
    }

    /// Runs `step` (one transaction) on job `id` at rest in its state, until the job stops
    /// moving under it.
    fn act<T>(
        &self,
        action: &'static str,
        id: JobId,
        mut step: impl FnMut(&mut DbConnection, JobState) -> QueryResult<Result<Step<T>, ActionError>>,
    ) -> Result<T, ActionError> {
        for _ in 0..10 {
            let attempt = self.write(action, |conn| match Found::of(conn, id)? {
                Found::At(state) => step(conn, state),
                Found::Moving => Ok(Ok(Step::Moved)),
                Found::Missing => Ok(Err(ActionError::NotFound(id))),
            })?;
            match attempt {
                Ok(Step::Done(value)) => return Ok(value),
                Ok(Step::Moved) => continue,
                Err(err) => return Err(err),
            }
        }
        Err(ActionError::KeptMoving(id))
    }

    /// Runs a failed, discarded or cancelled job again: it becomes ready (through its
    /// concurrency limit, if any) with one more attempt allowed if it had used them all.
    pub fn retry_job(&self, id: JobId, now: NaiveDateTime) -> Result<(), ActionError> {
        self.act("retrying a job", id, |conn, state| {
            match state {
                JobState::Failed => {
                    if !take_at_rest(conn, id, JobState::Failed)? {
                        return Ok(Ok(Step::Moved));
                    }
                }
                JobState::Discarded | JobState::Cancelled => {}
                state => {
                    return Ok(Err(ActionError::WrongState {
                        id,
                        state,
                        why: "only failed, discarded or cancelled jobs can be retried",
                    }))
                }
            }
            restart(self, conn, &[id], now)?;
            Ok(Ok(Step::Done(())))
        })?;
        self.jobs_ready();
        Ok(())
    }

    /// Ends a waiting (scheduled, ready, blocked) or failed job as discarded: kept, never
    /// run. A running job cannot be discarded (cancel it).
    pub fn discard_job(&self, id: JobId, now: NaiveDateTime) -> Result<(), ActionError> {
        self.act("discarding a job", id, |conn, state| match state {
            JobState::Ready | JobState::Scheduled | JobState::Blocked | JobState::Waiting | JobState::Failed => {
                if !self.end_at_rest(conn, id, state, EndState::Discarded, now)? {
                    return Ok(Ok(Step::Moved));
                }
                Ok(Ok(Step::Done(())))
            }
            JobState::Claimed => Ok(Err(ActionError::WrongState {
                id,
                state,
                why: "a running job cannot be discarded; cancel it (solidq jobs cancel) and its handler is told",
            })),
            _ => Ok(Err(ActionError::WrongState { id, state, why: "it has already ended" })),
        })
    }

    /// Cancels a job: a waiting one (scheduled, ready, blocked) ends as cancelled at once; a
    /// running one is marked, its process tells the handler, and it ends as cancelled when
    /// the handler returns (whatever it returns).
    pub fn cancel_job(&self, id: JobId, now: NaiveDateTime) -> Result<Cancelled, ActionError> {
        self.act("cancelling a job", id, |conn, state| match state {
            JobState::Ready | JobState::Scheduled | JobState::Blocked | JobState::Waiting => {
                if !self.end_at_rest(conn, id, state, EndState::Cancelled, now)? {
                    return Ok(Ok(Step::Moved));
                }
                Ok(Ok(Step::Done(Cancelled::Now)))
            }
            JobState::Claimed => {
                let marked = diesel::update(
                    jobs::table.filter(jobs::id.eq(id)).filter(jobs::id.eq_any(claimed::table.select(claimed::job_id))),
                )
                .set(jobs::cancel_requested_at.eq(at(now)))
                .execute(conn)?;
                Ok(Ok(if marked > 0 { Step::Done(Cancelled::Requested) } else { Step::Moved }))
            }
            JobState::Failed => Ok(Err(ActionError::WrongState {
                id,
                state,
                why: "it is not running; discard it (solidq jobs discard) to end it",
            })),
            _ => Ok(Err(ActionError::WrongState { id, state, why: "it has already ended" })),
        })
    }

    /// Retries every failed job (of `kind`, if given), [`ACTION_BATCH`] per transaction;
    /// returns how many.
    pub fn retry_failed(&self, kind: Option<&str>, now: NaiveDateTime) -> StoreResult<usize> {
        self.bulk("retrying failed jobs", kind, |store, conn, ids| restart(store, conn, ids, now))
    }

    /// Discards every failed job (of `kind`, if given), [`ACTION_BATCH`] per transaction;
    /// returns how many.
    pub fn discard_failed(&self, kind: Option<&str>, now: NaiveDateTime) -> StoreResult<usize> {
        self.bulk("discarding failed jobs", kind, |_, conn, ids| end_jobs(conn, ids, EndState::Discarded, None, now))
    }

    /// Takes failed jobs of `kind` in batches and hands each batch (their failed rows
    /// deleted) to `then`.
    fn bulk(
        &self,
        action: &'static str,
        kind: Option<&str>,
        then: impl Fn(&Store, &mut DbConnection, &[JobId]) -> QueryResult<()>,
    ) -> StoreResult<usize> {
        let mut filter = JobFilter::new(JobState::Failed);
        filter.kind = kind.map(str::to_string);
        filter.limit = ACTION_BATCH;
        let mut total = 0;
        loop {
            let done = self.write(action, |conn| {
                let ids = job_ids_on(conn, &filter)?;
                // The rows deleted decide: a job retried or discarded meanwhile is left alone.
                let taken: Vec<JobId> =
                    take_ids!(conn, failed, failed::table.filter(failed::job_id.eq_any(&ids)); failed::job_id)?;
                then(self, conn, &taken)?;
                Ok(ids.len())
            })?;
            total += done;
            if done < ACTION_BATCH {
                break;
            }
        }
        if total > 0 {
            self.jobs_ready();
        }
        Ok(total)
    }

    /// Pauses `queue`: no process claims from it (within one polling interval: claims read
    /// the pauses), jobs keep arriving. Returns false if it was paused already.
    pub fn pause_queue(&self, queue: &str, now: NaiveDateTime) -> StoreResult<bool> {
        if let Some(problem) = crate::model::queue_name_problem(queue) {
            return Err(StoreError::InvalidName(problem));
        }
        let inserted = self.write("pausing a queue", |conn| {
            let paused: bool = diesel::select(diesel::dsl::exists(pauses::table.find(queue))).get_result(conn)?;
            if paused {
                return Ok(0);
            }
            diesel::insert_into(pauses::table)
                .values((pauses::queue_name.eq(queue), pauses::created_at.eq(at(now))))
                .execute(conn)
        })?;
        Ok(inserted > 0)
    }

    /// Resumes `queue`; returns false if it was not paused.
    pub fn resume_queue(&self, queue: &str) -> StoreResult<bool> {
        let deleted = self.write("resuming a queue", |conn| {
            let deleted = diesel::delete(pauses::table.find(queue)).execute(conn)?;
            if deleted > 0 {
                // Workers of other processes may be idle for seconds: wake them.
                self.dialect().notify_ready(conn)?;
            }
            Ok(deleted)
        })?;
        if deleted > 0 {
            self.jobs_ready();
        }
        Ok(deleted > 0)
    }

    /// Every queue that has waiting or running jobs or is paused, by name.
    pub fn queues(&self, now: NaiveDateTime) -> StoreResult<Vec<QueueRow>> {
        self.read("listing queues", |conn| {
            let mut rows: std::collections::BTreeMap<String, QueueRow> = Default::default();
            let ready_rows: Vec<(String, i64, Option<NaiveDateTime>)> = ready::table
                .group_by(ready::queue_name)
                .select((ready::queue_name, count_star(), min(ready::created_at)))
                .load(conn)?;
            for (name, count, oldest) in ready_rows {
                let row = queue_row(&mut rows, &name);
                row.ready = count;
                row.latency_seconds =
                    oldest.map_or(0.0, |oldest| (now - oldest).num_milliseconds().max(0) as f64 / 1000.0);
            }
            let scheduled_rows: Vec<(String, i64)> = scheduled::table
                .group_by(scheduled::queue_name)
                .select((scheduled::queue_name, count_star()))
                .load(conn)?;
            scheduled_rows.into_iter().for_each(|(name, count)| queue_row(&mut rows, &name).scheduled = count);
            let claimed_rows: Vec<(String, i64)> = claimed::table
                .inner_join(jobs::table)
                .group_by(jobs::queue_name)
                .select((jobs::queue_name, count_star()))
                .load(conn)?;
            claimed_rows.into_iter().for_each(|(name, count)| queue_row(&mut rows, &name).claimed = count);
            let blocked_rows: Vec<(String, i64)> =
                blocked::table.group_by(blocked::queue_name).select((blocked::queue_name, count_star())).load(conn)?;
            blocked_rows.into_iter().for_each(|(name, count)| queue_row(&mut rows, &name).blocked = count);
            let waiting_rows: Vec<(String, i64)> =
                waiting::table.group_by(waiting::queue_name).select((waiting::queue_name, count_star())).load(conn)?;
            waiting_rows.into_iter().for_each(|(name, count)| queue_row(&mut rows, &name).waiting = count);
            let paused: Vec<String> = pauses::table.select(pauses::queue_name).load(conn)?;
            paused.iter().for_each(|name| queue_row(&mut rows, name).paused = true);
            Ok(rows.into_values().collect())
        })
    }

    /// Deletes up to `batch` jobs that ended (finished, discarded, cancelled) before
    /// `before`, oldest ids first; returns how many. Call again while it returns `batch`.
    pub fn clear_finished(&self, before: NaiveDateTime, batch: usize) -> StoreResult<usize> {
        // Ended jobs have no execution rows: nothing maintenance reads changes.
        self.write_unmarked("clearing finished jobs", true, |conn| {
            let ids: Vec<JobId> = jobs::table
                .filter(jobs::finished_at.lt(at(before)))
                .order(jobs::id)
                .limit(i64::try_from(batch).unwrap_or(i64::MAX))
                .select(jobs::id)
                .load(conn)?;
            // Batches that ended as long ago go with their jobs (members of a batch still open
            // are kept by its row, which a late member's end would otherwise not find).
            let ended_batches: Vec<i64> = batches::table
                .filter(batches::finished_at.lt(at(before)))
                .order(batches::id)
                .limit(i64::try_from(batch).unwrap_or(i64::MAX))
                .select(batches::id)
                .load(conn)?;
            diesel::delete(batches::table.filter(batches::id.eq_any(&ended_batches))).execute(conn)?;
            diesel::delete(jobs::table.filter(jobs::id.eq_any(&ids))).execute(conn)
        })
    }

    /// The jobs `process` holds whose cancel was asked for (see [`Store::cancel_job`]).
    pub fn cancel_requests(&self, process: ProcessId) -> StoreResult<Vec<JobId>> {
        // One statement: no transaction around it.
        self.with_connection("reading cancel requests", |conn| {
            claimed::table
                .inner_join(jobs::table)
                .filter(claimed::process_id.eq(process))
                .filter(jobs::cancel_requested_at.is_not_null())
                .select(claimed::job_id)
                .load(conn)
        })
    }
}

fn queue_row<'a>(rows: &'a mut std::collections::BTreeMap<String, QueueRow>, name: &str) -> &'a mut QueueRow {
    rows.entry(name.to_string()).or_insert_with(|| QueueRow {
        name: name.to_string(),
        ready: 0,
        scheduled: 0,
        claimed: 0,
        blocked: 0,
        waiting: 0,
        latency_seconds: 0.0,
        paused: false,
    })
}

/// Makes the jobs `ids` (out of every execution table) ready to run again: not ended, one
/// more attempt allowed if they used them all, through their concurrency limits.
pub(crate) fn restart(store: &Store, conn: &mut DbConnection, ids: &[JobId], now: NaiveDateTime) -> QueryResult<()> {
    for &id in ids {
        diesel::update(jobs::table.find(id))
            .set((
                jobs::finished_at.eq(None::<NaiveDateTime>),
                jobs::end_state.eq(None::<String>),
                jobs::cancel_requested_at.eq(None::<NaiveDateTime>),
                jobs::scheduled_at.eq(None::<NaiveDateTime>),
                jobs::updated_at.eq(at(now)),
            ))
            .execute(conn)?;
        diesel::update(jobs::table.find(id).filter(jobs::attempts.ge(jobs::max_attempts)))
            .set(jobs::max_attempts.eq(jobs::attempts + 1))
            .execute(conn)?;
    }
    composition::jobs_restarted(conn, ids)?;
    insert_ready(conn, ids, now)?;
    concurrency::admit(store.dialect(), conn, ids, now)?;
    Ok(())
}
