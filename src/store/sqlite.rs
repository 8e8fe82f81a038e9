//! SQLite backend.
//!
//! Every write goes through one writer connection in an IMMEDIATE transaction, so writes never
//! race for the lock inside this process and wait (busy timeout) for other processes on the
//! same file instead of failing. Reads use a separate pool; WAL lets them run beside the writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::pool::{sqlite_pools, SqlitePool};
use super::queries::{
    death_record, failure_json, job_insert_chunk, like_prefix, ClaimInsert, DeadProcess, JobInsert, ProcessInsert,
    ID_CHUNK,
};
use super::schema::{
    solidq_claimed_executions as claimed, solidq_jobs as jobs, solidq_processes as processes,
    solidq_ready_executions as ready, solidq_scheduled_executions as scheduled,
};
use super::{
    Beat, ClaimToken, ClaimedJob, DeathCause, DeathPolicy, EnqueueConnection, FailureRecord, Fenced, JobCounts, JobRow,
    NewProcess, ProcessId, ProcessRow, QueueCounts, QueuePattern, ReapOutcome, Store, StoreError, StoreResult,
};
use crate::job::{JobId, NewJob};

/// The SQLite migrations, embedded at build time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// SQLite's limit on bind parameters per statement (the default since SQLite 3.32).
const MAX_BINDS: usize = 32_766;

mod shared {
    crate::store::queries::shared_queries!(diesel::SqliteConnection);
}

/// SQLite store: one file, one writer connection, a pool of readers.
pub struct SqliteStore {
    path: PathBuf,
    writer: SqlitePool,
    reader: SqlitePool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` with a reader pool of
    /// `pool_size` connections. Does not migrate.
    pub fn open(path: &Path, pool_size: u32) -> StoreResult<Self> {
        let (writer, reader) = sqlite_pools(path, pool_size)?;
        Ok(SqliteStore { path: path.to_path_buf(), writer, reader })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in an IMMEDIATE transaction on the writer connection.
    fn write<T>(
        &self,
        action: &'static str,
        f: impl FnOnce(&mut SqliteConnection) -> QueryResult<T>,
    ) -> StoreResult<T> {
        let mut conn = self.writer.get().map_err(StoreError::connection(action))?;
        conn.immediate_transaction(f).map_err(StoreError::query(action))
    }

    /// Runs `f` in a read transaction (one snapshot) on a reader connection.
    fn read<T>(&self, action: &'static str, f: impl FnOnce(&mut SqliteConnection) -> QueryResult<T>) -> StoreResult<T> {
        let mut conn = self.reader.get().map_err(StoreError::connection(action))?;
        let conn: &mut SqliteConnection = &mut conn;
        conn.transaction(f).map_err(StoreError::query(action))
    }
}

/// Inserts the jobs and their executions; the caller holds a transaction.
fn enqueue_on(conn: &mut SqliteConnection, new_jobs: &[NewJob], now: NaiveDateTime) -> QueryResult<Vec<JobId>> {
    let mut ids = Vec::with_capacity(new_jobs.len());
    for chunk in new_jobs.chunks(job_insert_chunk(MAX_BINDS)) {
        let rows: Vec<JobInsert<'_>> = chunk.iter().map(|job| JobInsert::new(job, now)).collect();
        diesel::insert_into(jobs::table).values(&rows).execute(conn)?;
        // The insert holds SQLite's write lock until the transaction ends, and AUTOINCREMENT
        // gives new rows ids above every id ever used, in insertion order: the newest
        // `chunk.len()` ids are ours, in input order once reversed.
        let mut chunk_ids: Vec<JobId> =
            jobs::table.select(jobs::id).order(jobs::id.desc()).limit(chunk.len() as i64).load(conn)?;
        chunk_ids.reverse();
        ids.extend(chunk_ids);
    }
    shared::insert_executions(conn, &ids, now)?;
    Ok(ids)
}

impl EnqueueConnection for SqliteConnection {
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.transaction(|conn| enqueue_on(conn, jobs, now)).map_err(StoreError::query("enqueueing jobs"))
    }
}

/// Deletes and returns the job ids of every claim of `process`.
fn take_claims_of(conn: &mut SqliteConnection, process: ProcessId) -> QueryResult<Vec<JobId>> {
    let ids = claimed::table.filter(claimed::process_id.eq(process)).select(claimed::job_id).load(conn)?;
    diesel::delete(claimed::table.filter(claimed::process_id.eq(process))).execute(conn)?;
    Ok(ids)
}

/// Claims for `process` in an open IMMEDIATE transaction.
fn claim_on(
    conn: &mut SqliteConnection,
    process: ProcessId,
    queues: &[QueuePattern],
    limit: usize,
    now: NaiveDateTime,
) -> QueryResult<Vec<ClaimedJob>> {
    let alive: bool = diesel::select(diesel::dsl::exists(processes::table.find(process))).get_result(conn)?;
    if !alive {
        return Ok(Vec::new());
    }
    let mut picked: Vec<JobId> = Vec::new();
    for pattern in queues {
        let remaining = limit.saturating_sub(picked.len());
        if remaining == 0 {
            break;
        }
        let mut query = ready::table
            .select((ready::id, ready::job_id))
            .order((ready::priority, ready::job_id))
            .limit(i64::try_from(remaining).unwrap_or(i64::MAX))
            .into_boxed();
        match pattern {
            QueuePattern::All => {}
            QueuePattern::Exact(name) => query = query.filter(ready::queue_name.eq(name.clone())),
            QueuePattern::Prefix(prefix) => {
                query = query.filter(ready::queue_name.like(like_prefix(prefix)).escape('\\'))
            }
        }
        let rows: Vec<(i64, JobId)> = query.load(conn)?;
        // Deleted at once so that a later pattern cannot pick the same rows.
        let ready_ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        for chunk in ready_ids.chunks(ID_CHUNK) {
            diesel::delete(ready::table.filter(ready::id.eq_any(chunk))).execute(conn)?;
        }
        picked.extend(rows.into_iter().map(|(_, job_id)| job_id));
    }
    let mut claims: HashMap<JobId, i64> = HashMap::with_capacity(picked.len());
    #[allow(clippy::type_complexity)]
    let mut details: HashMap<JobId, (String, String, String, i32, i32, i32)> = HashMap::with_capacity(picked.len());
    for chunk in picked.chunks(ID_CHUNK) {
        let rows: Vec<ClaimInsert> =
            chunk.iter().map(|&job_id| ClaimInsert { job_id, process_id: process, created_at: now }).collect();
        diesel::insert_into(claimed::table).values(&rows).execute(conn)?;
        diesel::update(jobs::table.filter(jobs::id.eq_any(chunk)))
            .set((jobs::attempts.eq(jobs::attempts + 1), jobs::updated_at.eq(now)))
            .execute(conn)?;
        let ids: Vec<(JobId, i64)> =
            claimed::table.filter(claimed::job_id.eq_any(chunk)).select((claimed::job_id, claimed::id)).load(conn)?;
        claims.extend(ids);
        let rows: Vec<(JobId, String, String, String, i32, i32, i32)> = jobs::table
            .filter(jobs::id.eq_any(chunk))
            .select((
                jobs::id,
                jobs::class_name,
                jobs::arguments,
                jobs::queue_name,
                jobs::priority,
                jobs::attempts,
                jobs::max_attempts,
            ))
            .load(conn)?;
        details.extend(rows.into_iter().map(|(id, a, b, c, d, e, f)| (id, (a, b, c, d, e, f))));
    }
    let mut out = Vec::with_capacity(picked.len());
    for job_id in picked {
        let (Some(claim_id), Some((kind, arguments, queue, priority, attempts, max_attempts))) =
            (claims.get(&job_id).copied(), details.remove(&job_id))
        else {
            // Both rows were written in this transaction; a miss means the schema is broken.
            return Err(diesel::result::Error::NotFound);
        };
        out.push(ClaimedJob {
            token: ClaimToken { job_id, claim_id },
            kind,
            arguments,
            queue,
            priority,
            attempts,
            max_attempts,
        });
    }
    Ok(out)
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn migrate(&self) -> StoreResult<usize> {
        let mut conn = self.writer.get().map_err(StoreError::connection("migrating the database"))?;
        // One IMMEDIATE transaction around all pending migrations (each runs in a savepoint):
        // several processes migrating the same file at once apply them exactly once.
        conn.immediate_transaction::<_, Box<dyn std::error::Error + Send + Sync>, _>(|conn| {
            Ok(conn.run_pending_migrations(MIGRATIONS)?.len())
        })
        .map_err(|err| StoreError::Migration(err.to_string()))
    }

    fn enqueue(&self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.write("enqueueing jobs", |conn| enqueue_on(conn, jobs, now))
    }

    fn claim(
        &self,
        process: ProcessId,
        queues: &[QueuePattern],
        limit: usize,
        now: NaiveDateTime,
    ) -> StoreResult<Vec<ClaimedJob>> {
        if limit == 0 || queues.is_empty() {
            return Ok(Vec::new());
        }
        self.write("claiming jobs", |conn| claim_on(conn, process, queues, limit, now))
    }

    fn finish(&self, token: ClaimToken, now: NaiveDateTime) -> StoreResult<Fenced> {
        self.write("finishing a job", |conn| shared::finish(conn, token, now))
    }

    fn fail(&self, token: ClaimToken, error: &FailureRecord, now: NaiveDateTime) -> StoreResult<Fenced> {
        let error = failure_json(error);
        self.write("failing a job", |conn| shared::fail(conn, token, &error, now))
    }

    fn retry(
        &self,
        token: ClaimToken,
        error: &FailureRecord,
        run_at: NaiveDateTime,
        now: NaiveDateTime,
    ) -> StoreResult<Fenced> {
        let error = failure_json(error);
        self.write("scheduling a retry", |conn| shared::retry(conn, token, &error, run_at, now))
    }

    fn release(&self, token: ClaimToken, now: NaiveDateTime) -> StoreResult<Fenced> {
        self.write("releasing a claim", |conn| shared::release(conn, token, now))
    }

    fn dispatch_due(&self, now: NaiveDateTime, batch: usize) -> StoreResult<usize> {
        if batch == 0 {
            return Ok(0);
        }
        self.write("dispatching scheduled jobs", |conn| {
            let due: Vec<(i64, JobId)> = scheduled::table
                .filter(scheduled::scheduled_at.le(now))
                .order((scheduled::scheduled_at, scheduled::priority, scheduled::job_id))
                .limit(i64::try_from(batch).unwrap_or(i64::MAX))
                .select((scheduled::id, scheduled::job_id))
                .load(conn)?;
            let ids: Vec<i64> = due.iter().map(|(id, _)| *id).collect();
            for chunk in ids.chunks(ID_CHUNK) {
                diesel::delete(scheduled::table.filter(scheduled::id.eq_any(chunk))).execute(conn)?;
            }
            let job_ids: Vec<JobId> = due.into_iter().map(|(_, job_id)| job_id).collect();
            shared::insert_ready(conn, &job_ids, now)
        })
    }

    fn register_process(&self, process: &NewProcess, now: NaiveDateTime) -> StoreResult<ProcessId> {
        self.write("registering the process", |conn| {
            diesel::insert_into(processes::table).values(ProcessInsert::new(process, now)).execute(conn)?;
            processes::table.filter(processes::name.eq(&process.name)).select(processes::id).first(conn)
        })
    }

    fn heartbeat(&self, process: ProcessId, now: NaiveDateTime) -> StoreResult<Beat> {
        self.write("writing the heartbeat", |conn| shared::heartbeat(conn, process, now))
    }

    fn keep_session(&self, _process: ProcessId) -> StoreResult<bool> {
        Ok(false)
    }

    fn deregister(&self, process: ProcessId, now: NaiveDateTime) -> StoreResult<usize> {
        self.write("deregistering the process", |conn| {
            let ids = take_claims_of(conn, process)?;
            shared::hand_back(conn, &ids, now)?;
            shared::delete_process(conn, process)?;
            Ok(ids.len())
        })
    }

    fn processes(&self) -> StoreResult<Vec<ProcessRow>> {
        self.read("listing processes", shared::processes)
    }

    fn sessions_gone(&self, _candidates: &[ProcessId]) -> StoreResult<Vec<ProcessId>> {
        Ok(Vec::new())
    }

    fn reap_process(
        &self,
        process: ProcessId,
        cause: &DeathCause,
        policy: DeathPolicy,
        now: NaiveDateTime,
    ) -> StoreResult<ReapOutcome> {
        self.write("reaping a dead process", |conn| {
            let mut query = processes::table
                .find(process)
                .select((processes::name, processes::hostname, processes::pid, processes::last_heartbeat_at))
                .into_boxed();
            if let DeathCause::HeartbeatOlderThan { cutoff, .. } = cause {
                query = query.filter(processes::last_heartbeat_at.lt(*cutoff));
            }
            // The write lock is ours now: a verdict that waited too long for it is void.
            if cause.expired() {
                return Ok(ReapOutcome::default());
            }
            let Some(dead) = query.first::<DeadProcess>(conn).optional()? else {
                return Ok(ReapOutcome::default());
            };
            shared::delete_process(conn, process)?;
            let ids = take_claims_of(conn, process)?;
            let error = failure_json(&death_record(process, &dead, cause));
            let (retried, failed) = shared::dispose_claims(conn, &ids, &error, policy, now)?;
            Ok(ReapOutcome { reaped: true, retried, failed })
        })
    }

    fn release_orphans(&self, now: NaiveDateTime) -> StoreResult<usize> {
        self.write("releasing orphaned claims", |conn| {
            let orphans: Vec<(i64, JobId)> = claimed::table
                .filter(claimed::process_id.ne_all(processes::table.select(processes::id)))
                .select((claimed::id, claimed::job_id))
                .load(conn)?;
            let ids: Vec<i64> = orphans.iter().map(|(id, _)| *id).collect();
            for chunk in ids.chunks(ID_CHUNK) {
                diesel::delete(claimed::table.filter(claimed::id.eq_any(chunk))).execute(conn)?;
            }
            let job_ids: Vec<JobId> = orphans.into_iter().map(|(_, job_id)| job_id).collect();
            shared::insert_ready(conn, &job_ids, now)
        })
    }

    fn counts(&self) -> StoreResult<(JobCounts, Vec<QueueCounts>)> {
        self.read("counting jobs", shared::counts)
    }

    fn claimed_by(&self, process: ProcessId) -> StoreResult<Vec<ClaimToken>> {
        self.read("listing claims", |conn| shared::claimed_by(conn, process))
    }

    fn job(&self, id: JobId) -> StoreResult<Option<JobRow>> {
        self.read("reading a job", |conn| shared::job(conn, id))
    }
}
