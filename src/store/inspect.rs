//! Inspection: the reads that status views, the CLI and a dashboard need. Each read sees one
//! snapshot.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDateTime;
use diesel::dsl::count_star;
use diesel::prelude::*;
use serde::Serialize;

use super::connection::DbConnection;
use super::executions::EndState;
use super::schema::{
    solidq_blocked_executions as blocked, solidq_claimed_executions as claimed, solidq_failed_executions as failed,
    solidq_jobs as jobs, solidq_processes as processes, solidq_ready_executions as ready,
    solidq_scheduled_executions as scheduled, solidq_waiting_executions as waiting,
};
use super::{Store, StoreResult};
use crate::model::{ClaimToken, FailureKind, FailureRecord, JobId, JobState, ProcessId, ProcessMetadata, ProcessRow};

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
    /// `finished_at` set, no end state.
    pub finished: i64,
    /// In `solidq_blocked_executions`.
    pub blocked: i64,
    /// In `solidq_waiting_executions` (waiting for the jobs they depend on).
    pub waiting: i64,
    /// Ended as discarded.
    pub discarded: i64,
    /// Ended as cancelled.
    pub cancelled: i64,
}

impl JobCounts {
    fn of(&mut self, state: JobState) -> &mut i64 {
        match state {
            JobState::Ready => &mut self.ready,
            JobState::Scheduled => &mut self.scheduled,
            JobState::Claimed => &mut self.claimed,
            JobState::Failed => &mut self.failed,
            JobState::Finished => &mut self.finished,
            JobState::Blocked => &mut self.blocked,
            JobState::Waiting => &mut self.waiting,
            JobState::Discarded => &mut self.discarded,
            JobState::Cancelled => &mut self.cancelled,
        }
    }
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

/// Jobs of one kind on one queue that wait to run (ready or scheduled).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Waiting {
    /// The jobs' kind.
    pub kind: String,
    /// Their queue.
    pub queue: String,
    /// Ready now.
    pub ready: i64,
    /// Waiting for their time.
    pub scheduled: i64,
}

fn waiting_on(conn: &mut DbConnection) -> QueryResult<Vec<Waiting>> {
    let ready: Vec<(String, String, i64)> = ready::table
        .group_by((ready::class_name, ready::queue_name))
        .select((ready::class_name, ready::queue_name, count_star()))
        .load(conn)?;
    let scheduled: Vec<(String, String, i64)> = scheduled::table
        .inner_join(jobs::table)
        .group_by((jobs::class_name, jobs::queue_name))
        .select((jobs::class_name, jobs::queue_name, count_star()))
        .load(conn)?;
    let mut by_key: BTreeMap<(String, String), Waiting> = BTreeMap::new();
    for (kind, queue, count) in ready {
        by_key
            .entry((kind.clone(), queue.clone()))
            .or_insert_with(|| Waiting { kind, queue, ..Waiting::default() })
            .ready += count;
    }
    for (kind, queue, count) in scheduled {
        by_key
            .entry((kind.clone(), queue.clone()))
            .or_insert_with(|| Waiting { kind, queue, ..Waiting::default() })
            .scheduled += count;
    }
    Ok(by_key.into_values().collect())
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
    /// Executions started: those that ended or died, plus the one running while claimed.
    pub attempts: i32,
    /// Executions allowed.
    pub max_attempts: i32,
    /// Where the job is; `None` for a job no execution table holds and that never finished
    /// (which a consistent database never shows).
    pub state: Option<JobState>,
    /// When it runs or ran at the earliest.
    pub scheduled_at: Option<NaiveDateTime>,
    /// When it ended (finished, discarded or cancelled).
    pub finished_at: Option<NaiveDateTime>,
    /// When it was enqueued.
    pub created_at: NaiveDateTime,
    /// The last error recorded (retry, failure or discard).
    pub last_error: Option<FailureRecord>,
    /// The process holding its claim, if claimed.
    pub process_id: Option<ProcessId>,
    /// Its uniqueness key, while it holds it.
    pub unique_key: Option<String>,
    /// Its concurrency key.
    pub concurrency_key: Option<String>,
    /// Its global rate limit (`KEY:N/PERIOD` in JSON).
    pub rate_limit: Option<crate::model::RateLimit>,
    /// When a cancel was asked for while it ran.
    pub cancel_requested_at: Option<NaiveDateTime>,
}

/// The state a job that ended has, from its `end_state` column.
pub(crate) fn end_state(end: Option<&str>) -> JobState {
    match end.and_then(EndState::parse) {
        Some(EndState::Discarded) => JobState::Discarded,
        Some(EndState::Cancelled) => JobState::Cancelled,
        None => JobState::Finished,
    }
}

/// Which jobs [`Store::list_jobs`] returns: one state, optionally one queue and one kind,
/// in id order after `after` (for paging), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFilter {
    /// The state.
    pub state: JobState,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only ids above this one.
    pub after: Option<JobId>,
    /// At most this many rows.
    pub limit: usize,
}

impl JobFilter {
    /// The first 100 jobs in `state`.
    pub fn new(state: JobState) -> Self {
        JobFilter { state, queue: None, kind: None, after: None, limit: 100 }
    }
}

/// The columns of `solidq_jobs` a [`JobRow`] shows.
#[derive(Queryable, Selectable)]
#[diesel(table_name = jobs)]
struct JobColumns {
    id: i64,
    #[diesel(column_name = class_name)]
    kind: String,
    #[diesel(column_name = queue_name)]
    queue: String,
    priority: i32,
    arguments: String,
    attempts: i32,
    max_attempts: i32,
    scheduled_at: Option<NaiveDateTime>,
    finished_at: Option<NaiveDateTime>,
    last_error: Option<String>,
    created_at: NaiveDateTime,
    end_state: Option<String>,
    unique_key: Option<String>,
    concurrency_key: Option<String>,
    cancel_requested_at: Option<NaiveDateTime>,
    rate_limit_key: Option<String>,
    rate_limit: Option<i32>,
    rate_period_ms: Option<i64>,
}

/// The failure recorded for job `id` in `solidq_failed_executions`, from its typed columns.
pub(crate) fn failure_on(conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<BTreeMap<JobId, FailureRecord>> {
    type FailedColumns = (JobId, String, String, Option<String>, Option<String>);
    let rows: Vec<FailedColumns> = failed::table
        .filter(failed::job_id.eq_any(ids))
        .select((failed::job_id, failed::error_kind, failed::message, failed::backtrace, failed::cause))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, kind, message, backtrace, cause)| {
            (id, FailureRecord { kind: FailureKind::parse(&kind), message, backtrace, cause })
        })
        .collect())
}

/// The rows of `ids` (at most a few thousand), with their states, in id order.
pub(crate) fn jobs_on(conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<Vec<JobRow>> {
    let rows: Vec<JobColumns> =
        jobs::table.filter(jobs::id.eq_any(ids)).order(jobs::id).select(JobColumns::as_select()).load(conn)?;
    let holders: BTreeMap<JobId, ProcessId> = claimed::table
        .filter(claimed::job_id.eq_any(ids))
        .select((claimed::job_id, claimed::process_id))
        .load::<(JobId, ProcessId)>(conn)?
        .into_iter()
        .collect();
    // The jobs of `ids` that an execution table holds.
    macro_rules! held_in {
        ($table:ident) => {
            $table::table.filter($table::job_id.eq_any(ids)).select($table::job_id).load::<JobId>(conn)?
        };
    }
    let in_ready: HashSet<JobId> = held_in!(ready).into_iter().collect();
    let in_scheduled: HashSet<JobId> = held_in!(scheduled).into_iter().collect();
    let in_blocked: HashSet<JobId> = held_in!(blocked).into_iter().collect();
    let in_waiting: HashSet<JobId> = held_in!(waiting).into_iter().collect();
    let mut failures = failure_on(conn, ids)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let process_id = holders.get(&row.id).copied();
            let failure = failures.remove(&row.id);
            let state = if process_id.is_some() {
                Some(JobState::Claimed)
            } else if in_ready.contains(&row.id) {
                Some(JobState::Ready)
            } else if in_scheduled.contains(&row.id) {
                Some(JobState::Scheduled)
            } else if in_blocked.contains(&row.id) {
                Some(JobState::Blocked)
            } else if in_waiting.contains(&row.id) {
                Some(JobState::Waiting)
            } else if failure.is_some() {
                Some(JobState::Failed)
            } else {
                row.finished_at.map(|_| end_state(row.end_state.as_deref()))
            };
            JobRow {
                id: row.id,
                kind: row.kind,
                queue: row.queue,
                priority: row.priority,
                arguments: row.arguments,
                // The store writes an attempt when it ends; a claimed job's is under way.
                attempts: row.attempts + i32::from(process_id.is_some()),
                max_attempts: row.max_attempts,
                state,
                scheduled_at: row.scheduled_at,
                finished_at: row.finished_at,
                created_at: row.created_at,
                // The failed execution's typed record is the one a failed job shows.
                last_error: failure.or_else(|| row.last_error.as_deref().map(FailureRecord::from_json)),
                process_id,
                unique_key: row.unique_key,
                concurrency_key: row.concurrency_key,
                rate_limit: crate::model::RateLimit::from_columns(
                    row.rate_limit_key,
                    row.rate_limit,
                    row.rate_period_ms,
                ),
                cancel_requested_at: row.cancel_requested_at,
            }
        })
        .collect())
}

fn job_on(conn: &mut DbConnection, id: JobId) -> QueryResult<Option<JobRow>> {
    Ok(jobs_on(conn, &[id])?.pop())
}

/// Ids of the jobs `filter` selects, in id order.
pub(crate) fn job_ids_on(conn: &mut DbConnection, filter: &JobFilter) -> QueryResult<Vec<JobId>> {
    let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
    let mut query = jobs::table.select(jobs::id).order(jobs::id).limit(limit).into_boxed();
    if let Some(queue) = &filter.queue {
        query = query.filter(jobs::queue_name.eq(queue.clone()));
    }
    if let Some(kind) = &filter.kind {
        query = query.filter(jobs::class_name.eq(kind.clone()));
    }
    if let Some(after) = filter.after {
        query = query.filter(jobs::id.gt(after));
    }
    query = match filter.state {
        JobState::Ready => query.filter(jobs::id.eq_any(ready::table.select(ready::job_id))),
        JobState::Scheduled => query.filter(jobs::id.eq_any(scheduled::table.select(scheduled::job_id))),
        JobState::Claimed => query.filter(jobs::id.eq_any(claimed::table.select(claimed::job_id))),
        JobState::Blocked => query.filter(jobs::id.eq_any(blocked::table.select(blocked::job_id))),
        JobState::Waiting => query.filter(jobs::id.eq_any(waiting::table.select(waiting::job_id))),
        JobState::Failed => query.filter(jobs::id.eq_any(failed::table.select(failed::job_id))),
        JobState::Finished => query.filter(jobs::finished_at.is_not_null()).filter(jobs::end_state.is_null()),
        JobState::Discarded => query.filter(jobs::end_state.eq(EndState::Discarded.as_str())),
        JobState::Cancelled => query.filter(jobs::end_state.eq(EndState::Cancelled.as_str())),
    };
    query.load(conn)
}

fn counts_on(conn: &mut DbConnection) -> QueryResult<(JobCounts, Vec<QueueCounts>)> {
    let ended: Vec<(String, Option<String>, i64)> = jobs::table
        .filter(jobs::finished_at.is_not_null())
        .group_by((jobs::queue_name, jobs::end_state))
        .select((jobs::queue_name, jobs::end_state, count_star()))
        .load(conn)?;
    let ended_as = |state: JobState| -> Vec<(String, i64)> {
        ended
            .iter()
            .filter(|(_, end, _)| end_state(end.as_deref()) == state)
            .map(|(queue, _, count)| (queue.clone(), *count))
            .collect()
    };
    // Jobs per queue in one execution table: by the table's own queue name, or through the
    // job rows for the tables that have none.
    macro_rules! per_queue {
        ($table:ident) => {
            $table::table.group_by($table::queue_name).select(($table::queue_name, count_star())).load(conn)?
        };
        ($table:ident through jobs) => {
            $table::table
                .inner_join(jobs::table)
                .group_by(jobs::queue_name)
                .select((jobs::queue_name, count_star()))
                .load(conn)?
        };
    }
    let per_state: [(JobState, Vec<(String, i64)>); 9] = [
        (JobState::Waiting, per_queue!(waiting)),
        (JobState::Ready, per_queue!(ready)),
        (JobState::Scheduled, per_queue!(scheduled)),
        (JobState::Blocked, per_queue!(blocked)),
        (JobState::Claimed, per_queue!(claimed through jobs)),
        (JobState::Failed, per_queue!(failed through jobs)),
        (JobState::Finished, ended_as(JobState::Finished)),
        (JobState::Discarded, ended_as(JobState::Discarded)),
        (JobState::Cancelled, ended_as(JobState::Cancelled)),
    ];
    let mut queues: BTreeMap<String, JobCounts> = BTreeMap::new();
    let mut total = JobCounts::default();
    for (state, rows) in per_state {
        for (queue, count) in rows {
            *queues.entry(queue).or_default().of(state) += count;
            *total.of(state) += count;
        }
    }
    Ok((total, queues.into_iter().map(|(queue, counts)| QueueCounts { queue, counts }).collect()))
}

/// All process rows, oldest first.
pub(crate) fn processes_on(conn: &mut DbConnection) -> QueryResult<Vec<ProcessRow>> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(i64, String, String, i32, String, String, NaiveDateTime, NaiveDateTime)> = processes::table
        .order(processes::id)
        .select((
            processes::id,
            processes::kind,
            processes::name,
            processes::pid,
            processes::hostname,
            processes::metadata,
            processes::last_heartbeat_at,
            processes::created_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, kind, name, pid, hostname, metadata, last_heartbeat_at, created_at)| ProcessRow {
            id,
            kind,
            name,
            pid,
            hostname,
            metadata: ProcessMetadata::from_json(&metadata),
            last_heartbeat_at,
            created_at,
        })
        .collect())
}

/// The claims `process` holds, by job id.
pub(crate) fn claims_of_on(conn: &mut DbConnection, process: ProcessId) -> QueryResult<Vec<ClaimToken>> {
    let rows: Vec<(JobId, i64)> = claimed::table
        .filter(claimed::process_id.eq(process))
        .order(claimed::job_id)
        .select((claimed::job_id, claimed::id))
        .load(conn)?;
    Ok(rows.into_iter().map(|(job_id, claim_id)| ClaimToken { job_id, claim_id }).collect())
}

impl Store {
    /// Counts of jobs by state, overall and per queue (queues sorted by name).
    pub fn counts(&self) -> StoreResult<(JobCounts, Vec<QueueCounts>)> {
        self.read("counting jobs", counts_on)
    }

    /// One job with its state, if it exists.
    pub fn job(&self, id: JobId) -> StoreResult<Option<JobRow>> {
        self.read("reading a job", |conn| job_on(conn, id))
    }

    /// The jobs `filter` selects, in id order, with their states and last errors.
    pub fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<JobRow>> {
        self.read("listing jobs", |conn| {
            let ids = job_ids_on(conn, filter)?;
            jobs_on(conn, &ids)
        })
    }

    /// Every job of `kind` (every job: `None`), whatever its state, in id order, at most
    /// `limit`: what the test helpers ([`crate::testing`]) assert on.
    pub fn jobs_of_kind(&self, kind: Option<&str>, limit: usize) -> StoreResult<Vec<JobRow>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("listing jobs by kind", |conn| {
            let mut query = jobs::table.select(jobs::id).order(jobs::id).limit(limit).into_boxed();
            if let Some(kind) = kind {
                query = query.filter(jobs::class_name.eq(kind.to_string()));
            }
            let ids: Vec<JobId> = query.load(conn)?;
            let mut rows = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(1000) {
                rows.extend(jobs_on(conn, chunk)?);
            }
            Ok(rows)
        })
    }

    /// The claims `process` holds, by job id.
    pub fn claims_of(&self, process: ProcessId) -> StoreResult<Vec<ClaimToken>> {
        self.read("listing claims", |conn| claims_of_on(conn, process))
    }

    /// The jobs waiting to run (ready or scheduled) per kind and queue, sorted by kind then
    /// queue: what the status view compares with the kinds and queues live processes serve.
    pub fn waiting(&self) -> StoreResult<Vec<Waiting>> {
        self.read("counting waiting jobs", waiting_on)
    }

    /// All process rows, oldest first.
    pub fn processes(&self) -> StoreResult<Vec<ProcessRow>> {
        // One statement, a snapshot by itself: no transaction around it (the watchdog reads
        // this every second, idle or not).
        self.with_connection("listing processes", processes_on)
    }
}
