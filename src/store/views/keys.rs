//! The concurrency keys, unique keys and recurring tasks pages.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use diesel::dsl::{count_star, max};
use diesel::prelude::*;

use crate::store::sql_types::At;
use serde::Serialize;

use crate::model::{JobId, JobState, NewJob};
use crate::recurring::ON_TIME_WINDOW;
use crate::store::connection::DbConnection;
use crate::store::inspect::jobs_on;
use crate::store::recurring::{row_of, RecurringTaskRow, TaskColumns};
use crate::store::schema::{
    solidq_blocked_executions as blocked, solidq_claimed_executions as claimed, solidq_jobs as jobs,
    solidq_ready_executions as ready, solidq_recurring_executions as runs, solidq_recurring_tasks as tasks,
};
use crate::store::{Store, StoreError, StoreResult};

/// One concurrency key in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConcurrencyKeyRow {
    /// The key.
    pub key: String,
    /// Its limit (as its newest job states it).
    pub limit: i32,
    /// Jobs holding it: ready, or claimed less than the key's duration ago.
    pub holders: u64,
    /// Claimed jobs with the key whose hold has expired (claimed longer than the duration ago):
    /// they run but no longer count against the limit.
    pub expired_holders: u64,
    /// Blocked jobs waiting for it.
    pub blocked: u64,
}

/// One unique key held by a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UniqueKeyRow {
    /// The key.
    pub key: String,
    /// The job holding it.
    pub job_id: JobId,
    /// The job's kind.
    pub kind: String,
    /// The job's queue.
    pub queue: String,
    /// The job's state.
    pub state: Option<JobState>,
}

/// One recorded run of a recurring task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecurringRunRow {
    /// The run's time on the schedule.
    pub run_at: NaiveDateTime,
    /// The job enqueued for it.
    pub job_id: Option<JobId>,
    /// That job's state now (`None` when the job is gone: cleared as finished).
    pub state: Option<JobState>,
}

/// One recurring task on the recurring page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecurringRow {
    /// The task.
    pub task: RecurringTaskRow,
    /// Its next run after now, if its schedule and time zone read (UTC).
    pub next_run_at: Option<NaiveDateTime>,
    /// Its last recorded runs, newest first.
    pub last_runs: Vec<RecurringRunRow>,
    /// Scheduled run times, among the last few expected since the task was written, that have
    /// no recorded run (older than [`ON_TIME_WINDOW`], so a run under way is not called missed);
    /// newest first.
    pub missed: Vec<NaiveDateTime>,
    /// Why the task cannot be read, if it cannot (then no next run and no missed runs).
    pub problem: Option<String>,
}

fn concurrency_keys_on(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<Vec<ConcurrencyKeyRow>> {
    // The execution tables hold only unended jobs; ended jobs keep their key, so the jobs
    // table is only reached through them.
    let waiting: Vec<(String, i64)> = ready::table
        .inner_join(jobs::table)
        .filter(jobs::concurrency_key.is_not_null())
        .group_by(jobs::concurrency_key)
        .select((jobs::concurrency_key.assume_not_null(), count_star()))
        .load(conn)?;
    let running: Vec<(String, NaiveDateTime, Option<i64>)> = claimed::table
        .inner_join(jobs::table)
        .filter(jobs::concurrency_key.is_not_null())
        .select((jobs::concurrency_key.assume_not_null(), claimed::created_at, jobs::concurrency_duration_ms))
        .load(conn)?;
    let blocked_n: Vec<(String, i64)> = blocked::table
        .group_by(blocked::concurrency_key)
        .select((blocked::concurrency_key, count_star()))
        .load(conn)?;
    let mut rows: BTreeMap<String, ConcurrencyKeyRow> = BTreeMap::new();
    fn entry<'a>(rows: &'a mut BTreeMap<String, ConcurrencyKeyRow>, key: &str) -> &'a mut ConcurrencyKeyRow {
        rows.entry(key.to_string()).or_insert_with(|| ConcurrencyKeyRow {
            key: key.to_string(),
            limit: 0,
            holders: 0,
            expired_holders: 0,
            blocked: 0,
        })
    }
    for (key, n) in waiting {
        entry(&mut rows, &key).holders += u64::try_from(n).unwrap_or(0);
    }
    for (key, at, duration_ms) in running {
        let duration = TimeDelta::milliseconds(duration_ms.unwrap_or(i64::MAX / 4).min(i64::MAX / 4));
        let holds = now.checked_sub_signed(duration).is_none_or(|cutoff| at > cutoff);
        let row = entry(&mut rows, &key);
        if holds {
            row.holders += 1;
        } else {
            row.expired_holders += 1;
        }
    }
    for (key, n) in blocked_n {
        entry(&mut rows, &key).blocked = u64::try_from(n).unwrap_or(0);
    }
    let keys: Vec<String> = rows.keys().cloned().collect();
    for chunk in keys.chunks(500) {
        // The newest job of each key states its limit: one indexed probe per key.
        for key in chunk {
            let limit: Option<Option<i32>> = jobs::table
                .filter(jobs::concurrency_key.eq(key))
                .order(jobs::id.desc())
                .select(jobs::concurrency_limit)
                .first(conn)
                .optional()?;
            if let (Some(row), Some(Some(limit))) = (rows.get_mut(key), limit) {
                row.limit = limit;
            }
        }
    }
    Ok(rows.into_values().collect())
}

fn unique_keys_on(conn: &mut DbConnection, limit: usize) -> QueryResult<Vec<UniqueKeyRow>> {
    let held: Vec<(String, JobId)> = jobs::table
        .filter(jobs::unique_key.is_not_null())
        .order(jobs::unique_key)
        .select((jobs::unique_key.assume_not_null(), jobs::id))
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .load(conn)?;
    let ids: Vec<JobId> = held.iter().map(|(_, id)| *id).collect();
    let mut rows: HashMap<JobId, _> = jobs_on(conn, &ids)?.into_iter().map(|row| (row.id, row)).collect();
    Ok(held
        .into_iter()
        .filter_map(|(key, id)| {
            let row = rows.remove(&id)?;
            Some(UniqueKeyRow { key, job_id: id, kind: row.kind, queue: row.queue, state: row.state })
        })
        .collect())
}

/// The expected run times of `task` before `before`, newest first, at most `count`, all
/// after `since` (when the task was written: a run at that very time was not yet expected).
fn expected_runs(
    row: &RecurringTaskRow,
    before: DateTime<Utc>,
    since: NaiveDateTime,
    count: usize,
) -> Vec<NaiveDateTime> {
    let Ok(task) = row.task() else { return Vec::new() };
    let mut out = Vec::new();
    let mut cursor = before;
    while out.len() < count {
        let Some(at) = task.schedule.latest_before(cursor, task.time_zone) else { break };
        if at.naive_utc() <= since {
            break;
        }
        out.push(at.naive_utc());
        cursor = at;
    }
    out
}

fn recurring_overview_on(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    runs_per_task: usize,
) -> QueryResult<Vec<RecurringRow>> {
    let rows: Vec<TaskColumns> = tasks::table.select(TaskColumns::as_select()).order(tasks::key.asc()).load(conn)?;
    let now_utc = now.and_utc();
    let grace = TimeDelta::from_std(ON_TIME_WINDOW).unwrap_or_default();
    let per_task = i64::try_from(runs_per_task).unwrap_or(i64::MAX);
    let mut out = Vec::with_capacity(rows.len());
    for columns in rows {
        let mut task = row_of(columns, None);
        task.last_run_at = runs::table.filter(runs::task_key.eq(&task.key)).select(max(runs::run_at)).first(conn)?;
        let recorded: Vec<(NaiveDateTime, Option<JobId>)> = runs::table
            .filter(runs::task_key.eq(&task.key))
            .order(runs::run_at.desc())
            .select((runs::run_at, runs::job_id))
            .limit(per_task)
            .load(conn)?;
        let ids: Vec<JobId> = recorded.iter().filter_map(|(_, id)| *id).collect();
        let states: HashMap<JobId, Option<JobState>> =
            jobs_on(conn, &ids)?.into_iter().map(|row| (row.id, row.state)).collect();
        let last_runs = recorded
            .into_iter()
            .map(|(run_at, job_id)| RecurringRunRow {
                run_at,
                job_id,
                state: job_id.and_then(|id| states.get(&id).copied().flatten()),
            })
            .collect();
        let (next_run_at, problem) = match task.task() {
            Ok(parsed) => (parsed.next_run_after(now_utc).map(|at| at.naive_utc()), None),
            Err(err) => (None, Some(err.to_string())),
        };
        let expected = expected_runs(&task, now_utc - grace, task.created_at, runs_per_task);
        let found: Vec<NaiveDateTime> = if expected.is_empty() {
            Vec::new()
        } else {
            runs::table
                .filter(runs::task_key.eq(&task.key))
                .filter(runs::run_at.eq_any(expected.iter().copied().map(At).collect::<Vec<_>>()))
                .select(runs::run_at)
                .load(conn)?
        };
        let missed = expected.into_iter().filter(|at| !found.contains(at)).collect();
        out.push(RecurringRow { task, next_run_at, last_runs, missed, problem });
    }
    Ok(out)
}

impl Store {
    /// The concurrency keys page: every key that ready, claimed or blocked jobs have, by key,
    /// with its limit, holders and blocked jobs, as of `now`.
    pub fn concurrency_keys(&self, now: NaiveDateTime) -> StoreResult<Vec<ConcurrencyKeyRow>> {
        self.bounded_read("reading concurrency keys", |conn| concurrency_keys_on(conn, now))
    }

    /// Unique keys held (by jobs that may still run), by key, at most `limit`.
    pub fn unique_keys(&self, limit: usize) -> StoreResult<Vec<UniqueKeyRow>> {
        self.bounded_read("reading unique keys", |conn| unique_keys_on(conn, limit))
    }

    /// The recurring tasks page: every task by key, with its next run after `now`, its last
    /// `runs_per_task` recorded runs and the states of their jobs, and the runs among its last
    /// `runs_per_task` expected ones that were missed.
    pub fn recurring_overview(&self, now: NaiveDateTime, runs_per_task: usize) -> StoreResult<Vec<RecurringRow>> {
        self.bounded_read("reading recurring tasks", |conn| recurring_overview_on(conn, now, runs_per_task))
    }

    /// Enqueues the job of recurring task `key` now, outside its schedule: no run is recorded,
    /// so the scheduled runs go on as before. Returns the job's id; an error naming the task
    /// if there is none with that key, or it cannot be read.
    pub fn run_recurring_now(&self, key: &str, now: NaiveDateTime) -> StoreResult<JobId> {
        let row = self
            .bounded_read("reading a recurring task", |conn| {
                let columns: Option<TaskColumns> =
                    tasks::table.filter(tasks::key.eq(key)).select(TaskColumns::as_select()).first(conn).optional()?;
                Ok(columns.map(|columns| row_of(columns, None)))
            })?
            .ok_or_else(|| StoreError::InvalidQuery(format!("no recurring task has the key {key:?}")))?;
        let task = row.task().map_err(|err| StoreError::InvalidQuery(err.to_string()))?;
        let options = crate::EnqueueOptions::new().queue(task.queue.clone()).priority(task.priority);
        let job = NewJob::from_json(&task.kind, task.arguments.clone(), options)
            .map_err(|err| StoreError::InvalidQuery(format!("recurring task {key:?}: {err}")))?;
        let ids = self.enqueue(&[job], now)?;
        ids.first()
            .copied()
            .ok_or_else(|| StoreError::InvalidQuery(format!("recurring task {key:?}: nothing enqueued")))
    }
}
