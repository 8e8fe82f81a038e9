//! The reads behind the database-wide metric gauges: jobs per queue and state, the oldest
//! ready job per queue, and the processes' heartbeats. Two statements, each a snapshot by
//! itself; counts come from the execution tables (ready, scheduled, claimed, blocked, waiting,
//! failed),
//! never from the jobs table's ended rows, so a scrape stays cheap however many jobs finished.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use diesel::sql_types::{BigInt, Nullable, Text};
use serde::Serialize;

use super::connection::DbConnection;
use super::dialect::on_backend;
use super::schema::solidq_processes as processes;
use super::{Store, StoreResult};

/// Jobs per queue and state, and when the job at the head of each queue (the next to be
/// claimed: first by priority, then id) became ready. Each `UNION ALL` branch reads one
/// execution table: the counts of ready jobs come from the claim index on
/// `(queue_name, priority, job_id)`, the head of each queue from one probe of it; claimed and
/// failed rows find their queue by one primary-key lookup each in the jobs table, written as a
/// scalar subquery so that no plan scans the jobs table (a hash join would read every ended
/// job).
const QUEUE_GAUGES_SQL: &str = "
SELECT q.queue_name, 'ready' AS state, q.jobs,
       (SELECT r.created_at FROM solidq_ready_executions r WHERE r.queue_name = q.queue_name
        ORDER BY r.priority, r.job_id LIMIT 1) AS oldest
  FROM (SELECT queue_name, COUNT(*) AS jobs FROM solidq_ready_executions GROUP BY queue_name) q
UNION ALL
SELECT queue_name, 'scheduled', COUNT(*), NULL FROM solidq_scheduled_executions GROUP BY queue_name
UNION ALL
SELECT queue_name, 'blocked', COUNT(*), NULL FROM solidq_blocked_executions GROUP BY queue_name
UNION ALL
SELECT queue_name, 'waiting', COUNT(*), NULL FROM solidq_waiting_executions GROUP BY queue_name
UNION ALL
SELECT queue_name, 'claimed', COUNT(*), NULL FROM (
  SELECT (SELECT j.queue_name FROM solidq_jobs j WHERE j.id = c.job_id) AS queue_name
    FROM solidq_claimed_executions c) claimed GROUP BY queue_name
UNION ALL
SELECT queue_name, 'failed', COUNT(*), NULL FROM (
  SELECT (SELECT j.queue_name FROM solidq_jobs j WHERE j.id = f.job_id) AS queue_name
    FROM solidq_failed_executions f) failed GROUP BY queue_name";

/// PostgreSQL settings for the gauges' read transaction: a statement that runs long is
/// cancelled rather than holding a scrape, and no JIT compilation (its planner estimate of the
/// per-row subqueries crosses `jit_above_cost`, and compiling costs more than the query).
const POSTGRES_READ_SETTINGS: &str = "SET LOCAL statement_timeout = '2s'; SET LOCAL jit = off";

#[derive(QueryableByName)]
struct QueueStateRow {
    #[diesel(sql_type = Text)]
    queue_name: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = BigInt)]
    jobs: i64,
    #[diesel(sql_type = Nullable<crate::store::sql_types::Moment>)]
    oldest: Option<NaiveDateTime>,
}

/// The states `solidq_queue_jobs{state}` reports.
pub const GAUGE_STATES: [&str; 6] = ["ready", "scheduled", "claimed", "blocked", "waiting", "failed"];

/// One queue's gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueGauge {
    /// Queue name.
    pub queue: String,
    /// Jobs per state, in the order of [`GAUGE_STATES`].
    pub jobs: [i64; 6],
    /// How long the job at the head of the queue (the next to be claimed: first by priority,
    /// then id) has waited since it became ready; zero when none is ready.
    pub latency: Duration,
}

/// Processes by how recent their heartbeat is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProcessGauge {
    /// Heartbeat within half the alive threshold.
    pub alive: i64,
    /// Heartbeat older than half the alive threshold, not older than the threshold: a
    /// watchdog will judge it dead if it does not beat soon.
    pub late: i64,
    /// Heartbeat older than the alive threshold: the next watchdog pass prunes it.
    pub dead: i64,
}

/// What one scrape reads from the database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetricGauges {
    /// Per queue, sorted by name; queues without jobs in any execution table are absent.
    pub queues: Vec<QueueGauge>,
    /// Process rows by heartbeat age.
    pub processes: ProcessGauge,
}

impl Store {
    /// The database-wide gauges at `now`, judging heartbeats against `alive_threshold`: two
    /// statements (and, on SQLite, a look that the file is still there).
    pub fn metric_gauges(&self, now: NaiveDateTime, alive_threshold: Duration) -> StoreResult<MetricGauges> {
        // A deleted SQLite file still answers through open connections: say it is gone.
        self.check_database()?;
        let (rows, heartbeats) = self.read("reading metric gauges", |conn| {
            if let DbConnection::Postgres(pg) = conn {
                diesel::connection::SimpleConnection::batch_execute(pg, POSTGRES_READ_SETTINGS)?;
            }
            let rows: Vec<QueueStateRow> =
                on_backend!(conn, |c| diesel::sql_query(QUEUE_GAUGES_SQL).load::<QueueStateRow>(c))?;
            let heartbeats: Vec<NaiveDateTime> = processes::table.select(processes::last_heartbeat_at).load(conn)?;
            Ok((rows, heartbeats))
        })?;
        let mut queues: std::collections::BTreeMap<String, QueueGauge> = Default::default();
        for row in rows {
            let gauge = queues
                .entry(row.queue_name.clone())
                .or_insert_with(|| QueueGauge { queue: row.queue_name.clone(), ..QueueGauge::default() });
            if let Some(i) = GAUGE_STATES.iter().position(|state| *state == row.state) {
                gauge.jobs[i] += row.jobs;
            }
            if let Some(oldest) = row.oldest {
                gauge.latency = gauge.latency.max((now - oldest).to_std().unwrap_or_default());
            }
        }
        let mut processes = ProcessGauge::default();
        for beat in heartbeats {
            let age = (now - beat).to_std().unwrap_or_default();
            if age > alive_threshold {
                processes.dead += 1;
            } else if age > alive_threshold / 2 {
                processes.late += 1;
            } else {
                processes.alive += 1;
            }
        }
        Ok(MetricGauges { queues: queues.into_values().collect(), processes })
    }
}

impl Store {
    /// Whether the database answers: the file is still the one opened (SQLite), and a
    /// trivial statement runs.
    pub fn ping(&self) -> StoreResult<()> {
        self.check_database()?;
        self.with_connection("checking the database", |conn| {
            on_backend!(conn, |c| diesel::sql_query("SELECT 1").execute(c)).map(|_| ())
        })
    }

    /// Whether the row of `process` exists (it was not pruned or deregistered).
    pub fn process_exists(&self, process: crate::model::ProcessId) -> StoreResult<bool> {
        self.with_connection("looking for the process row", |conn| {
            diesel::select(diesel::dsl::exists(processes::table.find(process))).get_result(conn)
        })
    }
}

impl Store {
    /// How long the job at the head of each queue with ready jobs (the next to be claimed) has
    /// waited at `now`: one probe of the claim index per queue.
    pub fn ready_latencies(&self, now: NaiveDateTime) -> StoreResult<std::collections::BTreeMap<String, Duration>> {
        let rows: Vec<QueueStateRow> = self.read("reading queue latencies", |conn| {
            let sql = QUEUE_GAUGES_SQL.split("UNION ALL").next().unwrap_or_default();
            on_backend!(conn, |c| diesel::sql_query(sql).load::<QueueStateRow>(c))
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|row| row.oldest.map(|oldest| (row.queue_name, (now - oldest).to_std().unwrap_or_default())))
            .collect())
    }
}
