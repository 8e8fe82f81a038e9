//! Inspection: the reads that status views, the CLI and a dashboard need. Each read sees one
//! snapshot.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::dsl::count_star;
use diesel::prelude::*;
use serde::Serialize;

use super::connection::DbConnection;
use super::schema::{
    solidq_claimed_executions as claimed, solidq_failed_executions as failed, solidq_jobs as jobs,
    solidq_processes as processes, solidq_ready_executions as ready, solidq_scheduled_executions as scheduled,
};
use super::{Store, StoreResult};
use crate::model::{ClaimToken, FailureRecord, JobId, JobState, ProcessId, ProcessRow};

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

impl JobCounts {
    fn of(&mut self, state: JobState) -> &mut i64 {
        match state {
            JobState::Ready => &mut self.ready,
            JobState::Scheduled => &mut self.scheduled,
            JobState::Claimed => &mut self.claimed,
            JobState::Failed => &mut self.failed,
            JobState::Finished => &mut self.finished,
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
    /// When it finished.
    pub finished_at: Option<NaiveDateTime>,
    /// The last error recorded (retry or failure).
    pub last_error: Option<FailureRecord>,
    /// The process holding its claim, if claimed.
    pub process_id: Option<ProcessId>,
}

type JobColumns =
    (i64, String, String, i32, String, i32, i32, Option<NaiveDateTime>, Option<NaiveDateTime>, Option<String>);

fn job_on(conn: &mut DbConnection, id: JobId) -> QueryResult<Option<JobRow>> {
    let row: Option<JobColumns> = jobs::table
        .find(id)
        .select((
            jobs::id,
            jobs::class_name,
            jobs::queue_name,
            jobs::priority,
            jobs::arguments,
            jobs::attempts,
            jobs::max_attempts,
            jobs::scheduled_at,
            jobs::finished_at,
            jobs::last_error,
        ))
        .first(conn)
        .optional()?;
    let Some((id, kind, queue, priority, arguments, attempts, max_attempts, scheduled_at, finished_at, last_error)) =
        row
    else {
        return Ok(None);
    };
    let process_id: Option<i64> =
        claimed::table.filter(claimed::job_id.eq(id)).select(claimed::process_id).first(conn).optional()?;
    let in_ready: bool =
        diesel::select(diesel::dsl::exists(ready::table.filter(ready::job_id.eq(id)))).get_result(conn)?;
    let in_scheduled: bool =
        diesel::select(diesel::dsl::exists(scheduled::table.filter(scheduled::job_id.eq(id)))).get_result(conn)?;
    let in_failed: bool =
        diesel::select(diesel::dsl::exists(failed::table.filter(failed::job_id.eq(id)))).get_result(conn)?;
    let state = if process_id.is_some() {
        Some(JobState::Claimed)
    } else if in_ready {
        Some(JobState::Ready)
    } else if in_scheduled {
        Some(JobState::Scheduled)
    } else if in_failed {
        Some(JobState::Failed)
    } else {
        finished_at.map(|_| JobState::Finished)
    };
    Ok(Some(JobRow {
        id,
        kind,
        queue,
        priority,
        arguments,
        // The store writes an attempt when it ends; a claimed job's is under way.
        attempts: attempts + i32::from(process_id.is_some()),
        max_attempts,
        state,
        scheduled_at,
        finished_at,
        last_error: last_error.as_deref().map(FailureRecord::from_json),
        process_id,
    }))
}

fn counts_on(conn: &mut DbConnection) -> QueryResult<(JobCounts, Vec<QueueCounts>)> {
    let per_state: [(JobState, Vec<(String, i64)>); 5] = [
        (
            JobState::Ready,
            ready::table.group_by(ready::queue_name).select((ready::queue_name, count_star())).load(conn)?,
        ),
        (
            JobState::Scheduled,
            scheduled::table
                .group_by(scheduled::queue_name)
                .select((scheduled::queue_name, count_star()))
                .load(conn)?,
        ),
        (
            JobState::Claimed,
            claimed::table
                .inner_join(jobs::table)
                .group_by(jobs::queue_name)
                .select((jobs::queue_name, count_star()))
                .load(conn)?,
        ),
        (
            JobState::Failed,
            failed::table
                .inner_join(jobs::table)
                .group_by(jobs::queue_name)
                .select((jobs::queue_name, count_star()))
                .load(conn)?,
        ),
        (
            JobState::Finished,
            jobs::table
                .filter(jobs::finished_at.is_not_null())
                .group_by(jobs::queue_name)
                .select((jobs::queue_name, count_star()))
                .load(conn)?,
        ),
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
            metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
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
        self.read("listing processes", processes_on)
    }
}
