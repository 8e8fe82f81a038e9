//! The overview, queues, processes and stuck jobs pages.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::dsl::{count_star, min};
use diesel::prelude::*;

use crate::store::sql_types::at;
use serde::Serialize;

use super::{age_secs, cap_limit, queue_and_kind_of, Count, COUNT_CAP};
use crate::model::{JobId, JobState, ProcessId};
use crate::store::connection::DbConnection;
use crate::store::dialect::Estimate;
use crate::store::executions::EndState;
use crate::store::leadership::{leader_on, Leader};
use crate::store::schema::{
    solidq_blocked_executions as blocked, solidq_claimed_executions as claimed, solidq_failed_executions as failed,
    solidq_job_failures as failures, solidq_jobs as jobs, solidq_pauses as pauses, solidq_processes as processes,
    solidq_ready_executions as ready, solidq_scheduled_executions as scheduled, solidq_waiting_executions as waiting,
};
use crate::store::{Store, StoreResult};

/// Jobs per state, each counted up to [`COUNT_CAP`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    /// Waiting for a worker.
    pub ready: Count,
    /// Waiting for their time.
    pub scheduled: Count,
    /// Held by a process.
    pub claimed: Count,
    /// Waiting for their concurrency key.
    pub blocked: Count,
    /// Waiting for the jobs they depend on.
    pub waiting: Count,
    /// Failed for good.
    pub failed: Count,
    /// Done.
    pub finished: Count,
    /// Ended as discarded.
    pub discarded: Count,
    /// Ended as cancelled.
    pub cancelled: Count,
}

/// Jobs that ended in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinuteTally {
    /// The minute's start (UTC).
    pub minute: NaiveDateTime,
    /// Jobs finished in it.
    pub finished: u64,
    /// Failed attempts in it (retried, failed for good or discarded with an error).
    pub failed: u64,
}

/// How recent a process's heartbeat is, against the alive threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Beat within half the threshold.
    Alive,
    /// Beat within the threshold but not within half of it: the watchdog may judge it soon.
    Late,
    /// No beat within the threshold: the watchdog reaps it on its next pass.
    Dead,
}

impl Liveness {
    /// The liveness of a heartbeat `age` old against `alive_threshold`.
    pub fn of(age: TimeDelta, alive_threshold: Duration) -> Liveness {
        let threshold = TimeDelta::from_std(alive_threshold).unwrap_or(TimeDelta::MAX);
        if age > threshold {
            Liveness::Dead
        } else if age > threshold / 2 {
            Liveness::Late
        } else {
            Liveness::Alive
        }
    }
}

/// Processes by liveness.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessTally {
    /// Alive.
    pub alive: u64,
    /// Late.
    pub late: u64,
    /// Dead.
    pub dead: u64,
}

/// The oldest ready job of one queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OldestReady {
    /// The queue.
    pub queue: String,
    /// The job.
    pub job_id: JobId,
    /// When it became ready.
    pub ready_since: NaiveDateTime,
    /// How long it has waited, in seconds.
    pub age_secs: f64,
}

/// What the overview page shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    /// Jobs per state.
    pub counts: StateCounts,
    /// The last 60 minutes, oldest first, the current minute last.
    pub per_minute: Vec<MinuteTally>,
    /// Processes by liveness.
    pub processes: ProcessTally,
    /// The oldest ready job per queue, by queue name.
    pub oldest_ready: Vec<OldestReady>,
    /// The elected leader, if any was ever elected.
    pub leader: Option<Leader>,
}

/// One queue on the queues page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Ready jobs.
    pub ready: Count,
    /// Scheduled jobs.
    pub scheduled: Count,
    /// Claimed (running) jobs.
    pub claimed: Count,
    /// Blocked jobs.
    pub blocked: Count,
    /// Jobs waiting for the jobs they run after (workflows).
    pub waiting: Count,
    /// Failed jobs.
    pub failed: Count,
    /// How long its oldest ready job has waited, in seconds (0 without ready jobs).
    pub latency_secs: f64,
    /// When it was paused, if it is.
    pub paused_since: Option<NaiveDateTime>,
}

/// One process on the processes page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessDetail {
    /// Row id.
    pub id: ProcessId,
    /// `worker`, `supervisor`, ….
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its host.
    pub hostname: String,
    /// Its OS pid.
    pub pid: i32,
    /// When it registered.
    pub started_at: NaiveDateTime,
    /// Its last heartbeat.
    pub last_heartbeat_at: NaiveDateTime,
    /// Seconds since its last heartbeat.
    pub heartbeat_age_secs: f64,
    /// Alive, late or dead.
    pub liveness: Liveness,
    /// Jobs it holds.
    pub jobs_held: u64,
    /// The first few of them (at most [`ProcessDetail::SHOWN_JOBS`]), by id.
    pub some_jobs: Vec<JobId>,
    /// When the watchdog judges it dead if it does not beat again (last heartbeat + threshold).
    pub judged_at: NaiveDateTime,
    /// Claims held in its name by no registered process (the process row is gone). Only on the
    /// pseudo-row with `id` = the orphan process id, `kind` = `gone`.
    pub abandoned: bool,
    /// Its election, on the row of the leader (the one process that runs the maintenance
    /// sweeps).
    pub leader: Option<Leader>,
}

impl ProcessDetail {
    /// How many held job ids a row carries.
    pub const SHOWN_JOBS: usize = 5;
}

/// Why a claimed job is listed as stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StuckReason {
    /// Its process's heartbeat is late or dead.
    ProcessLate,
    /// Its process row is gone (an orphaned claim, which maintenance releases).
    ProcessGone,
    /// It has run longer than the limit given.
    RunningLong,
}

/// A claimed job on the stuck jobs page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StuckJob {
    /// The job.
    pub job_id: JobId,
    /// Its kind.
    pub kind: String,
    /// Its queue.
    pub queue: String,
    /// The process holding it.
    pub process_id: ProcessId,
    /// That process's name, if it is still registered.
    pub process_name: Option<String>,
    /// When it was claimed.
    pub claimed_at: NaiveDateTime,
    /// Seconds it has run.
    pub running_secs: f64,
    /// Why it is listed.
    pub reason: StuckReason,
}

/// The ids of at most `cap + 1` rows of one execution table, optionally of one queue (through
/// its own column or the job row).
macro_rules! capped_count {
    ($conn:expr, $table:ident) => {{
        let ids: Vec<i64> = $table::table.select($table::id).limit(cap_limit(COUNT_CAP)).load($conn)?;
        Count::capped(ids.len() as u64, COUNT_CAP)
    }};
}

/// The state counts of ended jobs: capped, or the planner's estimate above the cap.
fn ended_count(conn: &mut DbConnection, store: &Store, end: Option<EndState>) -> QueryResult<Count> {
    let query = jobs::table.select(jobs::id).filter(jobs::finished_at.is_not_null()).limit(cap_limit(COUNT_CAP));
    let ids: Vec<i64> = match end {
        None => query.filter(jobs::end_state.is_null()).load(conn)?,
        Some(end) => query.filter(jobs::end_state.eq(end.as_str())).load(conn)?,
    };
    let count = Count::capped(ids.len() as u64, COUNT_CAP);
    if count.is_exact() {
        return Ok(count);
    }
    let estimate = store.dialect().estimate_rows(conn, Estimate::Ended(end))?;
    Ok(estimate.map_or(count, |n| Count::Estimated(n.max(COUNT_CAP + 1))))
}

/// The count of one state, as [`state_counts_on`] counts it.
pub(crate) fn state_count_on(conn: &mut DbConnection, store: &Store, state: JobState) -> QueryResult<Count> {
    Ok(match state {
        JobState::Ready => capped_count!(conn, ready),
        JobState::Scheduled => capped_count!(conn, scheduled),
        JobState::Claimed => capped_count!(conn, claimed),
        JobState::Blocked => capped_count!(conn, blocked),
        JobState::Waiting => capped_count!(conn, waiting),
        JobState::Failed => capped_count!(conn, failed),
        JobState::Finished => ended_count(conn, store, None)?,
        JobState::Discarded => ended_count(conn, store, Some(EndState::Discarded))?,
        JobState::Cancelled => ended_count(conn, store, Some(EndState::Cancelled))?,
    })
}

pub(crate) fn state_counts_on(conn: &mut DbConnection, store: &Store) -> QueryResult<StateCounts> {
    Ok(StateCounts {
        ready: capped_count!(conn, ready),
        scheduled: capped_count!(conn, scheduled),
        claimed: capped_count!(conn, claimed),
        blocked: capped_count!(conn, blocked),
        waiting: capped_count!(conn, waiting),
        failed: capped_count!(conn, failed),
        finished: ended_count(conn, store, None)?,
        discarded: ended_count(conn, store, Some(EndState::Discarded))?,
        cancelled: ended_count(conn, store, Some(EndState::Cancelled))?,
    })
}

/// The start of the minute `at` is in.
fn minute_of(at: NaiveDateTime) -> NaiveDateTime {
    use chrono::Timelike;
    at.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(at)
}

/// Finished jobs and failed attempts per minute, the 60 minutes up to `now`: counts of index
/// ranges (finished jobs by `finished_at`, failures by their time), which read only the last
/// hour's rows however many jobs ended before.
fn per_minute_on(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<Vec<MinuteTally>> {
    let last = minute_of(now);
    let first = last - TimeDelta::minutes(59);
    let end = last + TimeDelta::minutes(1);
    let finished_at: Vec<NaiveDateTime> = jobs::table
        .filter(jobs::finished_at.is_not_null())
        .filter(jobs::finished_at.ge(at(first)))
        .filter(jobs::finished_at.lt(at(end)))
        .filter(jobs::end_state.is_null())
        .select(jobs::finished_at.assume_not_null())
        .load(conn)?;
    let failed_at: Vec<NaiveDateTime> = failures::table
        .filter(failures::created_at.ge(at(first)))
        .filter(failures::created_at.lt(at(end)))
        .select(failures::created_at)
        .load(conn)?;
    let mut tallies: Vec<MinuteTally> =
        (0..60).map(|i| MinuteTally { minute: first + TimeDelta::minutes(i), finished: 0, failed: 0 }).collect();
    let slot = |at: NaiveDateTime| usize::try_from((at - first).num_minutes()).ok().filter(|i| *i < 60);
    for at in finished_at {
        if let Some(i) = slot(at) {
            tallies[i].finished += 1;
        }
    }
    for at in failed_at {
        if let Some(i) = slot(at) {
            tallies[i].failed += 1;
        }
    }
    Ok(tallies)
}

type ProcessColumns = (ProcessId, String, String, String, i32, NaiveDateTime, NaiveDateTime);

fn process_rows_on(conn: &mut DbConnection) -> QueryResult<Vec<ProcessColumns>> {
    processes::table
        .order(processes::id)
        .select((
            processes::id,
            processes::kind,
            processes::name,
            processes::hostname,
            processes::pid,
            processes::created_at,
            processes::last_heartbeat_at,
        ))
        .load(conn)
}

/// The oldest ready job of each queue, by queue name. A ready row's id is taken when it is
/// inserted, at its `created_at`: the smallest id per queue is its oldest row. One grouped scan
/// of the ready table's queue index (which holds the row id), then one lookup per queue.
fn oldest_ready_on(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<Vec<OldestReady>> {
    let firsts: Vec<(String, Option<i64>)> =
        ready::table.group_by(ready::queue_name).select((ready::queue_name, min(ready::id))).load(conn)?;
    let ids: Vec<i64> = firsts.iter().filter_map(|(_, id)| *id).collect();
    let mut rows: Vec<OldestReady> = ready::table
        .filter(ready::id.eq_any(&ids))
        .select((ready::queue_name, ready::job_id, ready::created_at))
        .load::<(String, JobId, NaiveDateTime)>(conn)?
        .into_iter()
        .map(|(queue, job_id, since)| OldestReady { queue, job_id, ready_since: since, age_secs: age_secs(now, since) })
        .collect();
    rows.sort_by(|a, b| a.queue.cmp(&b.queue));
    Ok(rows)
}

fn overview_on(
    conn: &mut DbConnection,
    store: &Store,
    now: NaiveDateTime,
    alive_threshold: Duration,
) -> QueryResult<Overview> {
    let counts = state_counts_on(conn, store)?;
    let per_minute = per_minute_on(conn, now)?;
    let mut tally = ProcessTally::default();
    for (.., last_heartbeat_at) in process_rows_on(conn)? {
        match Liveness::of(now - last_heartbeat_at, alive_threshold) {
            Liveness::Alive => tally.alive += 1,
            Liveness::Late => tally.late += 1,
            Liveness::Dead => tally.dead += 1,
        }
    }
    let oldest_ready = oldest_ready_on(conn, now)?;
    let leader = leader_on(conn)?;
    Ok(Overview { counts, per_minute, processes: tally, oldest_ready, leader })
}

/// Rows per queue of one execution table. These tables hold only unended jobs (the ready
/// table is the largest, 100k rows in the benchmark), so they are counted exactly.
fn per_queue_capped(pairs: Vec<(String, i64)>) -> BTreeMap<String, Count> {
    pairs.into_iter().map(|(queue, n)| (queue, Count::Exact(u64::try_from(n).unwrap_or(0)))).collect()
}

/// Jobs of `ids` per queue.
fn per_queue_of(conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<BTreeMap<String, Count>> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (queue, _) in queue_and_kind_of(conn, ids)?.into_values() {
        *counts.entry(queue).or_default() += 1;
    }
    Ok(counts.into_iter().map(|(queue, n)| (queue, Count::Exact(n))).collect())
}

fn queue_stats_on(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<Vec<QueueStats>> {
    // Per-queue counts of the execution tables: these hold only unended jobs, so they stay
    // small next to the ended ones; the failed and claimed tables reach their queue through
    // the job row.
    let ready_n = per_queue_capped(
        ready::table.group_by(ready::queue_name).select((ready::queue_name, count_star())).load(conn)?,
    );
    let scheduled_n = per_queue_capped(
        scheduled::table.group_by(scheduled::queue_name).select((scheduled::queue_name, count_star())).load(conn)?,
    );
    let blocked_n = per_queue_capped(
        blocked::table.group_by(blocked::queue_name).select((blocked::queue_name, count_star())).load(conn)?,
    );
    let waiting_n = per_queue_capped(
        waiting::table.group_by(waiting::queue_name).select((waiting::queue_name, count_star())).load(conn)?,
    );
    let claimed_ids: Vec<JobId> = claimed::table.select(claimed::job_id).load(conn)?;
    let claimed_n = per_queue_of(conn, &claimed_ids)?;
    let failed_ids: Vec<JobId> = failed::table.select(failed::job_id).load(conn)?;
    let failed_n = per_queue_of(conn, &failed_ids)?;
    let paused: BTreeMap<String, NaiveDateTime> =
        pauses::table.select((pauses::queue_name, pauses::created_at)).load(conn)?.into_iter().collect();
    let oldest: BTreeMap<String, NaiveDateTime> =
        oldest_ready_on(conn, now)?.into_iter().map(|row| (row.queue, row.ready_since)).collect();
    let mut names: Vec<&String> = ready_n
        .keys()
        .chain(scheduled_n.keys())
        .chain(blocked_n.keys())
        .chain(waiting_n.keys())
        .chain(claimed_n.keys())
        .chain(failed_n.keys())
        .chain(paused.keys())
        .collect();
    names.sort();
    names.dedup();
    let zero = Count::Exact(0);
    Ok(names
        .into_iter()
        .map(|queue| QueueStats {
            queue: queue.clone(),
            ready: ready_n.get(queue).copied().unwrap_or(zero),
            scheduled: scheduled_n.get(queue).copied().unwrap_or(zero),
            claimed: claimed_n.get(queue).copied().unwrap_or(zero),
            blocked: blocked_n.get(queue).copied().unwrap_or(zero),
            waiting: waiting_n.get(queue).copied().unwrap_or(zero),
            failed: failed_n.get(queue).copied().unwrap_or(zero),
            latency_secs: oldest.get(queue).map_or(0.0, |since| age_secs(now, *since)),
            paused_since: paused.get(queue).copied(),
        })
        .collect())
}

fn process_details_on(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    alive_threshold: Duration,
) -> QueryResult<Vec<ProcessDetail>> {
    let held: BTreeMap<ProcessId, i64> = claimed::table
        .group_by(claimed::process_id)
        .select((claimed::process_id, count_star()))
        .load::<(ProcessId, i64)>(conn)?
        .into_iter()
        .collect();
    let threshold = TimeDelta::from_std(alive_threshold).unwrap_or(TimeDelta::MAX);
    let mut rows = Vec::new();
    let registered = process_rows_on(conn)?;
    let leader = leader_on(conn)?;
    for (id, kind, name, hostname, pid, started_at, last_heartbeat_at) in registered.iter().cloned() {
        let jobs_held = held.get(&id).copied().unwrap_or(0);
        rows.push(ProcessDetail {
            id,
            kind,
            name,
            hostname,
            pid,
            started_at,
            last_heartbeat_at,
            heartbeat_age_secs: age_secs(now, last_heartbeat_at),
            liveness: Liveness::of(now - last_heartbeat_at, alive_threshold),
            jobs_held: u64::try_from(jobs_held).unwrap_or(0),
            some_jobs: some_jobs_of(conn, id, jobs_held)?,
            judged_at: last_heartbeat_at.checked_add_signed(threshold).unwrap_or(NaiveDateTime::MAX),
            abandoned: false,
            leader: leader.clone().filter(|leader| leader.process == id),
        });
    }
    // Claims whose process row is gone: abandoned executions, released by maintenance.
    for (&id, &jobs_held) in &held {
        if registered.iter().any(|row| row.0 == id) {
            continue;
        }
        rows.push(ProcessDetail {
            id,
            kind: "gone".to_string(),
            name: String::new(),
            hostname: String::new(),
            pid: 0,
            started_at: now,
            last_heartbeat_at: now,
            heartbeat_age_secs: 0.0,
            liveness: Liveness::Dead,
            jobs_held: u64::try_from(jobs_held).unwrap_or(0),
            some_jobs: some_jobs_of(conn, id, jobs_held)?,
            judged_at: now,
            abandoned: true,
            leader: None,
        });
    }
    Ok(rows)
}

fn some_jobs_of(conn: &mut DbConnection, process: ProcessId, held: i64) -> QueryResult<Vec<JobId>> {
    if held == 0 {
        return Ok(Vec::new());
    }
    claimed::table
        .filter(claimed::process_id.eq(process))
        .order(claimed::job_id)
        .select(claimed::job_id)
        .limit(ProcessDetail::SHOWN_JOBS as i64)
        .load(conn)
}

fn stuck_jobs_on(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    alive_threshold: Duration,
    running_longer_than: Duration,
    limit: usize,
) -> QueryResult<Vec<StuckJob>> {
    let processes: BTreeMap<ProcessId, (String, NaiveDateTime)> =
        process_rows_on(conn)?.into_iter().map(|(id, _, name, _, _, _, beat)| (id, (name, beat))).collect();
    let late_ids: Vec<ProcessId> = processes
        .iter()
        .filter(|(_, (_, beat))| Liveness::of(now - *beat, alive_threshold) != Liveness::Alive)
        .map(|(id, _)| *id)
        .collect();
    let known: Vec<ProcessId> = processes.keys().copied().collect();
    let long = now - TimeDelta::from_std(running_longer_than).unwrap_or(TimeDelta::MAX / 2);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Three bounded reads of the claimed table, which holds only running jobs.
    let mut found: BTreeMap<JobId, (ProcessId, NaiveDateTime, StuckReason)> = BTreeMap::new();
    let of = |rows: Vec<(JobId, ProcessId, NaiveDateTime)>, reason: StuckReason, found: &mut BTreeMap<_, _>| {
        for (job, process, at) in rows {
            found.entry(job).or_insert((process, at, reason));
        }
    };
    let columns = (claimed::job_id, claimed::process_id, claimed::created_at);
    of(
        claimed::table.filter(claimed::process_id.eq_any(&late_ids)).select(columns).limit(limit).load(conn)?,
        StuckReason::ProcessLate,
        &mut found,
    );
    of(
        claimed::table.filter(claimed::process_id.ne_all(&known)).select(columns).limit(limit).load(conn)?,
        StuckReason::ProcessGone,
        &mut found,
    );
    of(
        claimed::table
            .filter(claimed::created_at.lt(at(long)))
            .order(claimed::created_at)
            .select(columns)
            .limit(limit)
            .load(conn)?,
        StuckReason::RunningLong,
        &mut found,
    );
    let ids: Vec<JobId> = found.keys().copied().collect();
    let kinds: BTreeMap<JobId, (String, String)> = jobs::table
        .filter(jobs::id.eq_any(&ids))
        .select((jobs::id, jobs::class_name, jobs::queue_name))
        .load::<(JobId, String, String)>(conn)?
        .into_iter()
        .map(|(id, kind, queue)| (id, (kind, queue)))
        .collect();
    let mut rows: Vec<StuckJob> = found
        .into_iter()
        .map(|(job_id, (process_id, claimed_at, reason))| {
            let (kind, queue) = kinds.get(&job_id).cloned().unwrap_or_default();
            StuckJob {
                job_id,
                kind,
                queue,
                process_id,
                process_name: processes.get(&process_id).map(|(name, _)| name.clone()),
                claimed_at,
                running_secs: age_secs(now, claimed_at),
                reason,
            }
        })
        .collect();
    rows.sort_by(|a, b| a.claimed_at.cmp(&b.claimed_at).then(a.job_id.cmp(&b.job_id)));
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(rows)
}

impl Store {
    /// The overview page: jobs per state (capped or estimated), finished jobs and failed
    /// attempts per minute over the last hour, processes by [`Liveness`] against
    /// `alive_threshold`, and the oldest ready job per queue.
    pub fn overview(&self, now: NaiveDateTime, alive_threshold: Duration) -> StoreResult<Overview> {
        self.bounded_read("reading the overview", |conn| overview_on(conn, self, now, alive_threshold))
    }

    /// Jobs per state (capped or estimated), as [`Store::overview`] counts them.
    pub fn state_counts(&self) -> StoreResult<StateCounts> {
        self.bounded_read("counting jobs by state", |conn| state_counts_on(conn, self))
    }

    /// The queues page: every queue that has unended jobs or is paused, by name, with its
    /// depth per state (capped), latency and pause.
    pub fn queue_stats(&self, now: NaiveDateTime) -> StoreResult<Vec<QueueStats>> {
        self.bounded_read("reading queue statistics", |conn| queue_stats_on(conn, now))
    }

    /// The processes page: every registered process (by id) with its liveness against
    /// `alive_threshold`, the jobs it holds and when the watchdog judges it; then one row per
    /// process id that still holds claims but is no longer registered (`abandoned`).
    pub fn process_details(&self, now: NaiveDateTime, alive_threshold: Duration) -> StoreResult<Vec<ProcessDetail>> {
        self.bounded_read("reading process details", |conn| process_details_on(conn, now, alive_threshold))
    }

    /// The stuck jobs page: claimed jobs whose process is late or dead against
    /// `alive_threshold` or no longer registered, or that were claimed more than
    /// `running_longer_than` before `now`; oldest claim first, at most `limit`.
    pub fn stuck_jobs(
        &self,
        now: NaiveDateTime,
        alive_threshold: Duration,
        running_longer_than: Duration,
        limit: usize,
    ) -> StoreResult<Vec<StuckJob>> {
        self.bounded_read("reading stuck jobs", |conn| {
            stuck_jobs_on(conn, now, alive_threshold, running_longer_than, limit)
        })
    }
}
