//! Recurring tasks: the task list (static and dynamic tasks) and the record of their runs.
//!
//! A run is enqueued at most once over every scheduler of a database: the transaction that
//! enqueues it first inserts its row of `solidq_recurring_executions`, unique by
//! `(task_key, run_at)`, with `ON CONFLICT DO NOTHING`. The scheduler whose insert took the
//! row enqueues the job and records its id in the same transaction; the others insert nothing
//! and learn that the run was already enqueued. On PostgreSQL an insert that meets a row
//! another transaction inserted but has not committed waits for it, and inserts if that
//! transaction rolled back; on SQLite write transactions are serialized.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::dsl::max;
use diesel::prelude::*;

use crate::store::sql_types::{at, At};
use serde::Serialize;

use super::connection::DbConnection;
use super::schema::{solidq_recurring_executions as runs, solidq_recurring_tasks as tasks};
use super::{Store, StoreResult};
use crate::model::{JobId, NewJob};
use crate::recurring::{parse_time_zone, RecurringError, RecurringTask, RunMissed, Schedule};

/// A row of `solidq_recurring_tasks`, with its last recorded run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecurringTaskRow {
    /// The task's unique name.
    pub key: String,
    /// Its schedule as written.
    pub schedule: String,
    /// Kind of the job it enqueues.
    pub kind: String,
    /// The job's arguments (a JSON string holding the stored text if it is not JSON).
    pub arguments: serde_json::Value,
    /// Queue of the job.
    pub queue: String,
    /// Priority of the job.
    pub priority: i32,
    /// IANA time zone of the schedule.
    pub time_zone: String,
    /// `skip` or `latest`.
    pub run_missed: String,
    /// Whether it comes from the configuration (`SOLIDQ_RECURRING`, the builder) rather than
    /// from `RecurringTasks::add` or `solidq recurring add`.
    #[serde(rename = "static")]
    pub is_static: bool,
    /// When it was first written (UTC).
    pub created_at: NaiveDateTime,
    /// When it was last written (UTC).
    pub updated_at: NaiveDateTime,
    /// Its latest recorded run (UTC), if any.
    pub last_run_at: Option<NaiveDateTime>,
}

impl RecurringTaskRow {
    /// The task this row describes; an error if the row cannot be read (written by hand, or
    /// by another version).
    pub fn task(&self) -> Result<RecurringTask, RecurringError> {
        let invalid = |err| RecurringError::Task { key: self.key.clone(), source: Box::new(err) };
        let schedule = Schedule::parse(&self.schedule).map_err(invalid)?;
        let time_zone = parse_time_zone(&self.time_zone).map_err(invalid)?;
        let run_missed = RunMissed::parse(&self.run_missed).map_err(invalid)?;
        let task = RecurringTask {
            key: self.key.clone(),
            schedule,
            kind: self.kind.clone(),
            arguments: self.arguments.clone(),
            queue: self.queue.clone(),
            priority: self.priority,
            time_zone,
            run_missed,
        };
        match task.problem() {
            Some(problem) => Err(invalid(RecurringError::Invalid(problem))),
            None => Ok(task),
        }
    }
}

/// What writing the static tasks did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticTasksSynced {
    /// Static tasks written (inserted or updated).
    pub written: usize,
    /// Keys of static tasks deleted because they are no longer configured.
    pub removed: Vec<String>,
}

/// What [`Store::remove_recurring_task`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// The dynamic task was deleted.
    Removed,
    /// There is no task with that key.
    Missing,
    /// The task is static: it comes from the configuration and would be written again when a
    /// scheduler starts. Nothing was deleted.
    Static,
}

/// One run to enqueue: the job of task `task_key` for its time `run_at` (UTC, whole seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct DueRun {
    /// The task's key.
    pub task_key: String,
    /// The run's time on the schedule.
    pub run_at: NaiveDateTime,
    /// The job to enqueue for it.
    pub job: NewJob,
}

/// A recorded run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Queryable)]
pub struct RecurringRun {
    /// The task's key.
    pub task_key: String,
    /// The run's time on the schedule (UTC).
    pub run_at: NaiveDateTime,
    /// The job enqueued for it.
    pub job_id: Option<JobId>,
}

/// A row of `solidq_recurring_tasks` to write (`created_at` is `updated_at` for a new row).
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = tasks)]
pub(crate) struct TaskWrite<'a> {
    key: &'a str,
    schedule: &'a str,
    class_name: &'a str,
    arguments: String,
    queue_name: &'a str,
    priority: i32,
    time_zone: &'a str,
    run_missed: &'a str,
    is_static: bool,
    pub(crate) updated_at: At,
}

impl<'a> TaskWrite<'a> {
    fn new(task: &'a RecurringTask, is_static: bool, now: NaiveDateTime) -> Self {
        TaskWrite {
            key: &task.key,
            schedule: task.schedule.as_str(),
            class_name: &task.kind,
            arguments: task.arguments.to_string(),
            queue_name: &task.queue,
            priority: task.priority,
            time_zone: task.time_zone.name(),
            run_missed: task.run_missed.as_str(),
            is_static,
            updated_at: at(now),
        }
    }
}

/// Inserts the task of `write` or, when a task has its key, updates that one (`ON CONFLICT
/// (key) DO UPDATE`, so that schedulers starting together never collide).
fn upsert_task(conn: &mut DbConnection, write: &TaskWrite<'_>) -> QueryResult<()> {
    let row = (write, tasks::created_at.eq(write.updated_at));
    match conn {
        DbConnection::Sqlite(conn) => {
            diesel::insert_into(tasks::table).values(row).on_conflict(tasks::key).do_update().set(write).execute(conn)
        }
        DbConnection::Postgres(conn) => {
            diesel::insert_into(tasks::table).values(row).on_conflict(tasks::key).do_update().set(write).execute(conn)
        }
        // `ON DUPLICATE KEY UPDATE`: `key` is the only unique key a new row can collide on.
        #[cfg(feature = "mysql")]
        DbConnection::Mysql(conn) => diesel::insert_into(tasks::table)
            .values(row)
            .on_conflict(diesel::dsl::DuplicatedKeys)
            .do_update()
            .set(write)
            .execute(conn),
    }
    .map(drop)
}

/// Inserts the run (`task_key`, `run_at`) with no job yet, unless it exists (`ON CONFLICT DO
/// NOTHING`); returns whether this call inserted it. The unique (task_key, run_at) decides
/// which scheduler enqueues a run.
fn insert_run(conn: &mut DbConnection, task_key: &str, run_at: NaiveDateTime, now: NaiveDateTime) -> QueryResult<bool> {
    let row = (
        runs::task_key.eq(task_key),
        runs::run_at.eq(at(run_at)),
        runs::job_id.eq(None::<JobId>),
        runs::created_at.eq(at(now)),
    );
    let inserted = match conn {
        DbConnection::Sqlite(conn) => diesel::insert_into(runs::table)
            .values(row)
            .on_conflict((runs::task_key, runs::run_at))
            .do_nothing()
            .execute(conn),
        DbConnection::Postgres(conn) => diesel::insert_into(runs::table)
            .values(row)
            .on_conflict((runs::task_key, runs::run_at))
            .do_nothing()
            .execute(conn),
        // A plain INSERT: a no-op `ON DUPLICATE KEY UPDATE` would count 1 row (diesel connects
        // with CLIENT_FOUND_ROWS), the same as an insert. A duplicate fails only this statement;
        // the transaction goes on.
        #[cfg(feature = "mysql")]
        DbConnection::Mysql(conn) => match diesel::insert_into(runs::table).values(row).execute(conn) {
            Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => Ok(0),
            other => other,
        },
    }?;
    Ok(inserted == 1)
}

/// A row of `solidq_recurring_tasks`, as read.
#[derive(Queryable, Selectable)]
#[diesel(table_name = tasks)]
pub(crate) struct TaskColumns {
    key: String,
    schedule: String,
    class_name: String,
    arguments: String,
    queue_name: String,
    priority: i32,
    time_zone: String,
    run_missed: String,
    is_static: bool,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

pub(crate) fn row_of(row: TaskColumns, last_run_at: Option<NaiveDateTime>) -> RecurringTaskRow {
    let arguments = serde_json::from_str(&row.arguments).unwrap_or(serde_json::Value::String(row.arguments));
    RecurringTaskRow {
        key: row.key,
        schedule: row.schedule,
        kind: row.class_name,
        arguments,
        queue: row.queue_name,
        priority: row.priority,
        time_zone: row.time_zone,
        run_missed: row.run_missed,
        is_static: row.is_static,
        created_at: row.created_at,
        updated_at: row.updated_at,
        last_run_at,
    }
}

/// Refuses a task with a problem, and one whose job would be refused.
fn check_task(task: &RecurringTask) -> StoreResult<()> {
    match task.problem() {
        Some(problem) => Err(super::StoreError::InvalidJob { kind: task.kind.clone(), problem }),
        None => Ok(()),
    }
}

impl Store {
    /// Writes the static tasks `configured` (inserted, or updated by key: a dynamic task with
    /// the same key becomes static) and deletes the static tasks not among them; dynamic tasks
    /// are left alone. One transaction. Schedulers call it when they start, as Solid Queue's
    /// do.
    pub fn sync_static_recurring_tasks(
        &self,
        configured: &[RecurringTask],
        now: NaiveDateTime,
    ) -> StoreResult<StaticTasksSynced> {
        configured.iter().try_for_each(check_task)?;
        let keys: Vec<&str> = configured.iter().map(|task| task.key.as_str()).collect();
        self.write("writing the static recurring tasks", |conn| {
            for task in configured {
                upsert_task(conn, &TaskWrite::new(task, true, now))?;
            }
            let stale = tasks::table.filter(tasks::is_static.eq(true)).filter(tasks::key.ne_all(&keys));
            let removed: Vec<String> = stale.select(tasks::key).load(conn)?;
            if !removed.is_empty() {
                diesel::delete(tasks::table.filter(tasks::key.eq_any(&removed))).execute(conn)?;
            }
            Ok(StaticTasksSynced { written: configured.len(), removed })
        })
    }

    /// Adds the dynamic task `task`, or replaces the task with its key (which becomes
    /// dynamic). Running schedulers pick it up at their next reload of the task list.
    pub fn add_recurring_task(&self, task: &RecurringTask, now: NaiveDateTime) -> StoreResult<()> {
        check_task(task)?;
        self.write("adding a recurring task", |conn| upsert_task(conn, &TaskWrite::new(task, false, now)))
    }

    /// Deletes the dynamic task `key`. Static tasks are not deleted (they come back when a
    /// scheduler starts): remove them from the configuration instead. Its recorded runs stay.
    pub fn remove_recurring_task(&self, key: &str) -> StoreResult<Removed> {
        self.write("removing a recurring task", |conn| {
            let found: Option<bool> =
                tasks::table.filter(tasks::key.eq(key)).select(tasks::is_static).first(conn).optional()?;
            match found {
                None => Ok(Removed::Missing),
                Some(true) => Ok(Removed::Static),
                Some(false) => {
                    diesel::delete(tasks::table.filter(tasks::key.eq(key))).execute(conn)?;
                    Ok(Removed::Removed)
                }
            }
        })
    }

    /// Every recurring task, ordered by key, with its last recorded run. Two statements.
    pub fn recurring_tasks(&self) -> StoreResult<Vec<RecurringTaskRow>> {
        self.read("listing the recurring tasks", |conn| {
            let rows: Vec<TaskColumns> =
                tasks::table.select(TaskColumns::as_select()).order(tasks::key.asc()).load(conn)?;
            let last: HashMap<String, Option<NaiveDateTime>> = runs::table
                .group_by(runs::task_key)
                .select((runs::task_key, max(runs::run_at)))
                .load::<(String, Option<NaiveDateTime>)>(conn)?
                .into_iter()
                .collect();
            Ok(rows
                .into_iter()
                .map(|row| {
                    let last_run = last.get(&row.key).copied().flatten();
                    row_of(row, last_run)
                })
                .collect())
        })
    }

    /// Every recurring task, ordered by key, without its last run: what a scheduler reloads.
    /// One statement, outside any transaction.
    pub fn recurring_task_list(&self) -> StoreResult<Vec<RecurringTaskRow>> {
        self.with_connection("loading the recurring tasks", |conn| {
            let rows: Vec<TaskColumns> =
                tasks::table.select(TaskColumns::as_select()).order(tasks::key.asc()).load(conn)?;
            Ok(rows.into_iter().map(|row| row_of(row, None)).collect())
        })
    }

    /// The latest recorded run of each task of `keys` that has one. One statement (an index
    /// lookup per key).
    pub fn last_recurring_runs(&self, keys: &[String]) -> StoreResult<HashMap<String, NaiveDateTime>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        self.with_connection("reading the last runs of recurring tasks", |conn| {
            let last: Vec<(String, Option<NaiveDateTime>)> = runs::table
                .filter(runs::task_key.eq_any(keys))
                .group_by(runs::task_key)
                .select((runs::task_key, max(runs::run_at)))
                .load(conn)?;
            Ok(last.into_iter().filter_map(|(key, at)| at.map(|at| (key, at))).collect())
        })
    }

    /// Enqueues the job of each run in `due` that no scheduler enqueued before, recording the
    /// run and its job in the same transaction (one for all of `due`); returns, in the order
    /// given, the new job's id or `None` for a run already enqueued (by another scheduler).
    pub fn enqueue_recurring_runs(&self, due: &[DueRun], now: NaiveDateTime) -> StoreResult<Vec<Option<JobId>>> {
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let jobs: Vec<NewJob> = due.iter().map(|run| run.job.clone()).collect();
        super::jobs::enqueue::check_jobs(&jobs)?;
        self.check_database()?;
        let ids = self.write("enqueueing recurring task runs", |conn| {
            let mut ids = Vec::with_capacity(due.len());
            for run in due {
                if !insert_run(conn, &run.task_key, run.run_at, now)? {
                    ids.push(None);
                    continue;
                }
                // Through the kind's unique key and concurrency limit, if the job has them.
                let id = super::jobs::enqueue::enqueue_with_options(
                    self.dialect(),
                    conn,
                    std::slice::from_ref(&run.job),
                    now,
                )?
                .first()
                .map(|enqueued| enqueued.id());
                diesel::update(
                    runs::table.filter(runs::task_key.eq(&run.task_key)).filter(runs::run_at.eq(at(run.run_at))),
                )
                .set(runs::job_id.eq(id))
                .execute(conn)?;
                ids.push(id);
            }
            Ok(ids)
        })?;
        if ids.iter().any(Option::is_some) && due.iter().any(|run| run.job.scheduled_at.is_none_or(|at| at <= now)) {
            self.jobs_ready();
        }
        Ok(ids)
    }

    /// The recorded runs of task `key` at or after `since`, oldest first.
    pub fn recurring_runs(&self, key: &str, since: NaiveDateTime) -> StoreResult<Vec<RecurringRun>> {
        self.read("reading the runs of a recurring task", |conn| {
            runs::table
                .filter(runs::task_key.eq(key))
                .filter(runs::run_at.ge(at(since)))
                .order(runs::run_at.asc())
                .select((runs::task_key, runs::run_at, runs::job_id))
                .load(conn)
        })
    }
}
