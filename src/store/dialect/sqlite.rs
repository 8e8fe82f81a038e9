//! SQLite: every write in an `IMMEDIATE` transaction on the one writer connection, so writes
//! never race for the lock inside a process and wait (busy timeout) for other processes on the
//! same file instead of failing. Under that lock nothing else writes, so a select followed by a
//! delete decides a race as a `DELETE … RETURNING` would. Ids of new jobs are the newest ids
//! (AUTOINCREMENT never reuses one). No session liveness: the pid probe and the heartbeat
//! decide.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;

use crate::store::sql_types::{at, At};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{expect_variant, lock_or_recover, DeadProcess, Dialect};
use crate::model::{ClaimToken, ClaimedJob, JobId, NewJob, ProcessId, QueuePattern};
use crate::store::connection::{DbConnection, SqliteFile};
use crate::store::error::{StoreError, StoreResult};
use crate::store::leadership::Candidacy;
use crate::store::params::{like_prefix, Claim, JobInsert, ID_CHUNK};
use crate::store::schema::{
    solidq_claimed_executions as claimed, solidq_jobs as jobs, solidq_pauses as pauses, solidq_processes as processes,
    solidq_ready_executions as ready, solidq_scheduled_executions as scheduled,
};

/// The SQLite migrations, embedded at build time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// SQLite's limit on bind parameters per statement (the default since SQLite 3.32).
const MAX_BINDS: usize = 32_766;

/// The SQLite dialect, with the file the store opened (none when only its SQL is used).
#[derive(Debug)]
pub struct Sqlite {
    file: Option<SqliteFile>,
    /// The leader lock files this store's processes hold, locked (see [`Sqlite::try_lead`]).
    leading: Mutex<HashMap<ProcessId, std::fs::File>>,
}

impl Sqlite {
    /// The dialect for the database file the store has just opened.
    pub fn opened(file: SqliteFile) -> Self {
        Sqlite { file: Some(file), leading: Mutex::default() }
    }

    /// The dialect's SQL only, on a connection the caller opened.
    pub fn sql_only() -> Self {
        Sqlite { file: None, leading: Mutex::default() }
    }
}

/// The file beside `database` whose exclusive lock is the leader lock: the kernel frees it
/// when the holder dies, as the server frees a session lock.
fn leader_lock_path(database: &std::path::Path) -> std::path::PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-leader");
    name.into()
}

/// A row of `solidq_claimed_executions` to insert.
#[derive(Insertable)]
#[diesel(table_name = claimed)]
struct ClaimInsert {
    job_id: i64,
    process_id: i64,
    created_at: At,
}

/// A row of `solidq_ready_executions` to insert.
#[derive(Insertable)]
#[diesel(table_name = ready)]
struct ReadyInsert<'a> {
    job_id: i64,
    queue_name: &'a str,
    priority: i32,
    created_at: At,
    class_name: &'a str,
}

/// A row of `solidq_scheduled_executions` to insert.
#[derive(Insertable)]
#[diesel(table_name = scheduled)]
struct ScheduledInsert<'a> {
    job_id: i64,
    queue_name: &'a str,
    priority: i32,
    scheduled_at: At,
    created_at: At,
}

/// Inserts the jobs and their executions; the caller holds a transaction.
pub(crate) fn enqueue_on(
    conn: &mut SqliteConnection,
    new_jobs: &[NewJob],
    now: NaiveDateTime,
) -> QueryResult<Vec<JobId>> {
    let mut ids = Vec::with_capacity(new_jobs.len());
    for chunk in new_jobs.chunks(JobInsert::rows_per_statement(MAX_BINDS)) {
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
    // The executions straight from the jobs given: no need to read the rows back.
    let (mut due, mut later) = (Vec::new(), Vec::new());
    for (&job_id, job) in ids.iter().zip(new_jobs) {
        let (queue_name, priority) = (job.queue.as_str(), job.priority);
        match job.scheduled_at.filter(|at| *at > now) {
            None => due.push(ReadyInsert { job_id, queue_name, priority, created_at: at(now), class_name: &job.kind }),
            Some(scheduled_at) => later.push(ScheduledInsert {
                job_id,
                queue_name,
                priority,
                scheduled_at: at(scheduled_at),
                created_at: at(now),
            }),
        }
    }
    for chunk in due.chunks(MAX_BINDS / 5) {
        diesel::insert_into(ready::table).values(chunk).execute(conn)?;
    }
    for chunk in later.chunks(MAX_BINDS / 5) {
        diesel::insert_into(scheduled::table).values(chunk).execute(conn)?;
    }
    Ok(ids)
}

/// Reads `PRAGMA data_version` on the writer connection every [`WATCH_INTERVAL`] until `stop`
/// is set: it changes exactly when another connection (another process, the application's
/// own connections, the CLI) committed, never for the writer's own commits. Each change wakes
/// the workers and is counted in the store's [`ChangeMark`](crate::store::changes::ChangeMark)s;
/// each look is reported to the observer as "watching for commits". A look that cannot have
/// the writer soon (it is busy with a long write) is skipped: marks then go stale and
/// maintenance reads again, and the next look compares with the last value seen.
fn watch_commits(context: &super::ListenerContext, wake: &dyn Fn(), stop: &std::sync::atomic::AtomicBool) {
    use crate::store::changes::WATCH_INTERVAL;
    #[derive(QueryableByName)]
    struct DataVersion {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        data_version: i64,
    }
    let mut last: Option<i64> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let started = std::time::Instant::now();
        let version =
            context.writer.get_timeout(WATCH_INTERVAL * 4).ok().and_then(|mut conn| {
                diesel::sql_query("PRAGMA data_version").get_result::<DataVersion>(&mut *conn).ok()
            });
        if let Some(observer) = &context.observer {
            let event = crate::store::observer::StoreEvent {
                operation: "watching for commits",
                elapsed: started.elapsed(),
                ok: version.is_some(),
            };
            observer.finished(&event);
        }
        if let Some(DataVersion { data_version }) = version {
            let committed = last.is_some_and(|seen| seen != data_version);
            last = Some(data_version);
            context.changes.watched(started, committed);
            if committed {
                wake();
            }
        }
        std::thread::sleep(WATCH_INTERVAL.saturating_sub(started.elapsed()));
    }
}

/// Deletes the execution rows `rows` (their ids, with their jobs') by id, a chunk at a time,
/// and returns their job ids: the rows were read under the write lock, so the deletion decides.
fn delete_rows(
    conn: &mut SqliteConnection,
    rows: Vec<(i64, JobId)>,
    delete: impl Fn(&mut SqliteConnection, &[i64]) -> QueryResult<usize>,
) -> QueryResult<Vec<JobId>> {
    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
    for chunk in ids.chunks(ID_CHUNK) {
        delete(conn, chunk)?;
    }
    Ok(rows.into_iter().map(|(_, job_id)| job_id).collect())
}

/// Claims for `process` under the write lock.
fn claim_on(conn: &mut SqliteConnection, claim: &Claim<'_>) -> QueryResult<Vec<ClaimedJob>> {
    let Claim { process, queues, kinds, limit, now } = *claim;
    let alive: bool = diesel::select(diesel::dsl::exists(processes::table.find(process))).get_result(conn)?;
    if !alive {
        return Ok(Vec::new());
    }
    let mut picked: Vec<(JobId, NaiveDateTime)> = Vec::new();
    for pattern in queues {
        let remaining = limit.saturating_sub(picked.len());
        if remaining == 0 {
            break;
        }
        let mut query = ready::table
            .select((ready::id, ready::job_id, ready::created_at))
            .order((ready::priority, ready::job_id))
            .filter(ready::class_name.eq_any(kinds))
            .filter(ready::queue_name.ne_all(pauses::table.select(pauses::queue_name)))
            .limit(i64::try_from(remaining).unwrap_or(i64::MAX))
            .into_boxed();
        match pattern {
            QueuePattern::All => {}
            QueuePattern::Exact(name) => query = query.filter(ready::queue_name.eq(name.clone())),
            QueuePattern::Prefix(prefix) => {
                query = query.filter(ready::queue_name.like(like_prefix(prefix)).escape('\\'))
            }
        }
        let rows: Vec<(i64, JobId, NaiveDateTime)> = query.load(conn)?;
        // Deleted at once so that a later pattern cannot pick the same rows.
        let ready_ids: Vec<i64> = rows.iter().map(|(id, _, _)| *id).collect();
        for chunk in ready_ids.chunks(ID_CHUNK) {
            diesel::delete(ready::table.filter(ready::id.eq_any(chunk))).execute(conn)?;
        }
        picked.extend(rows.into_iter().map(|(_, job_id, ready_at)| (job_id, ready_at)));
    }
    let mut claims: HashMap<JobId, i64> = HashMap::with_capacity(picked.len());
    let mut details: HashMap<JobId, super::ClaimedRow> = HashMap::with_capacity(picked.len());
    let picked_ids: Vec<JobId> = picked.iter().map(|(job_id, _)| *job_id).collect();
    for chunk in picked_ids.chunks(ID_CHUNK) {
        let rows: Vec<ClaimInsert> =
            chunk.iter().map(|&job_id| ClaimInsert { job_id, process_id: process, created_at: at(now) }).collect();
        diesel::insert_into(claimed::table).values(&rows).execute(conn)?;
        let ids: Vec<(JobId, i64)> =
            claimed::table.filter(claimed::job_id.eq_any(chunk)).select((claimed::job_id, claimed::id)).load(conn)?;
        claims.extend(ids);
        let rows: Vec<super::ClaimedRowWithId> = jobs::table
            .filter(jobs::id.eq_any(chunk))
            .select((
                jobs::id,
                jobs::class_name,
                jobs::arguments,
                jobs::queue_name,
                jobs::priority,
                jobs::attempts,
                jobs::max_attempts,
                jobs::rate_limit_key,
            ))
            .load(conn)?;
        details.extend(rows.into_iter().map(|(id, a, b, c, d, e, f, g)| (id, (a, b, c, d, e, f, g))));
    }
    super::claimed_jobs(picked, &claims, details)
}

impl Dialect for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn check_database(&self) -> Result<(), String> {
        self.file.as_ref().map_or(Ok(()), SqliteFile::check)
    }

    fn ready_listener(&self, context: super::ListenerContext) -> Option<super::ReadyListener> {
        Some(Box::new(move |wake, stop| watch_commits(&context, wake, stop)))
    }

    fn database_gone(&self) -> Option<String> {
        self.file.as_ref().and_then(SqliteFile::gone)
    }

    /// The leader lock is an exclusive `flock` of `<database>-leader`, opened once per process
    /// (locks of two opens conflict even within one OS process). A try is a system call, no
    /// statement.
    fn try_lead(&self, process: ProcessId) -> StoreResult<Candidacy> {
        let mut leading = lock_or_recover(&self.leading);
        if leading.contains_key(&process) {
            return Ok(Candidacy { leads: true, fleet: None });
        }
        let Some(file) = &self.file else { return Ok(Candidacy { leads: false, fleet: None }) };
        let path = leader_lock_path(file.path());
        let action = "trying the leader lock";
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|err| {
            StoreError::Connection { action, message: format!("cannot open {}: {err}", path.display()) }
        })?;
        match lock.try_lock() {
            Ok(()) => {
                leading.insert(process, lock);
                Ok(Candidacy { leads: true, fleet: None })
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(Candidacy { leads: false, fleet: None }),
            Err(std::fs::TryLockError::Error(err)) => {
                Err(StoreError::Connection { action, message: format!("cannot lock {}: {err}", path.display()) })
            }
        }
    }

    fn resign(&self, process: ProcessId) {
        // Closing the file releases its lock.
        lock_or_recover(&self.leading).remove(&process);
    }

    fn begin_write(&self, conn: &mut DbConnection) -> QueryResult<()> {
        AnsiTransactionManager::begin_transaction_sql(expect_variant!(conn, Sqlite), "BEGIN IMMEDIATE")
    }

    fn begin_read(&self, conn: &mut DbConnection) -> QueryResult<()> {
        <DbConnection as Connection>::TransactionManager::begin_transaction(conn)
    }

    fn retryable(&self, _err: &diesel::result::Error) -> bool {
        // Lock waits are the busy timeout's job; an IMMEDIATE transaction cannot deadlock.
        false
    }

    fn migrate(&self, conn: &mut DbConnection) -> Result<usize, String> {
        let conn = match conn {
            DbConnection::Sqlite(conn) => conn,
            _ => return Err("the SQLite dialect was given another backend's connection".into()),
        };
        // One IMMEDIATE transaction around all pending migrations (each runs in a savepoint):
        // several processes migrating the same file at once apply them exactly once.
        conn.immediate_transaction::<_, Box<dyn std::error::Error + Send + Sync>, _>(|conn| {
            Ok(conn.run_pending_migrations(MIGRATIONS)?.len())
        })
        .map_err(|err| err.to_string())
    }

    fn enqueue(&self, conn: &mut DbConnection, jobs: &[NewJob], now: NaiveDateTime) -> QueryResult<Vec<JobId>> {
        enqueue_on(expect_variant!(conn, Sqlite), jobs, now)
    }

    fn claim(&self, conn: &mut DbConnection, claim: &Claim<'_>) -> QueryResult<Vec<ClaimedJob>> {
        claim_on(expect_variant!(conn, Sqlite), claim)
    }

    fn take_claims(&self, conn: &mut DbConnection, tokens: &[ClaimToken]) -> QueryResult<Vec<ClaimToken>> {
        let conn = expect_variant!(conn, Sqlite);
        let mut taken = Vec::with_capacity(tokens.len());
        for chunk in tokens.chunks(ID_CHUNK) {
            let claim_ids: Vec<i64> = chunk.iter().map(|t| t.claim_id).collect();
            let present: Vec<(i64, JobId)> = claimed::table
                .filter(claimed::id.eq_any(&claim_ids))
                .select((claimed::id, claimed::job_id))
                .load(conn)?;
            let mine: Vec<ClaimToken> = present
                .into_iter()
                .map(|(claim_id, job_id)| ClaimToken { job_id, claim_id })
                .filter(|token| chunk.contains(token))
                .collect();
            let ids: Vec<i64> = mine.iter().map(|t| t.claim_id).collect();
            diesel::delete(claimed::table.filter(claimed::id.eq_any(&ids))).execute(conn)?;
            taken.extend(mine);
        }
        Ok(taken)
    }

    fn take_claims_of(&self, conn: &mut DbConnection, process: ProcessId) -> QueryResult<Vec<JobId>> {
        let conn = expect_variant!(conn, Sqlite);
        let ids = claimed::table.filter(claimed::process_id.eq(process)).select(claimed::job_id).load(conn)?;
        diesel::delete(claimed::table.filter(claimed::process_id.eq(process))).execute(conn)?;
        Ok(ids)
    }

    fn take_orphan_claims(&self, conn: &mut DbConnection) -> QueryResult<Vec<JobId>> {
        let conn = expect_variant!(conn, Sqlite);
        let orphans: Vec<(i64, JobId)> = claimed::table
            .filter(claimed::process_id.ne_all(processes::table.select(processes::id)))
            .select((claimed::id, claimed::job_id))
            .load(conn)?;
        delete_rows(conn, orphans, |conn, ids| {
            diesel::delete(claimed::table.filter(claimed::id.eq_any(ids))).execute(conn)
        })
    }

    fn take_due(&self, conn: &mut DbConnection, now: NaiveDateTime, batch: usize) -> QueryResult<Vec<JobId>> {
        let conn = expect_variant!(conn, Sqlite);
        let due: Vec<(i64, JobId)> = scheduled::table
            .filter(scheduled::scheduled_at.le(at(now)))
            .order((scheduled::scheduled_at, scheduled::priority, scheduled::job_id))
            .limit(i64::try_from(batch).unwrap_or(i64::MAX))
            .select((scheduled::id, scheduled::job_id))
            .load(conn)?;
        delete_rows(conn, due, |conn, ids| {
            diesel::delete(scheduled::table.filter(scheduled::id.eq_any(ids))).execute(conn)
        })
    }

    fn delete_process(
        &self,
        conn: &mut DbConnection,
        process: ProcessId,
        cutoff: Option<NaiveDateTime>,
    ) -> QueryResult<Option<DeadProcess>> {
        let conn = expect_variant!(conn, Sqlite);
        let mut query = processes::table
            .find(process)
            .select((processes::name, processes::hostname, processes::pid, processes::last_heartbeat_at))
            .into_boxed();
        if let Some(cutoff) = cutoff {
            query = query.filter(processes::last_heartbeat_at.lt(at(cutoff)));
        }
        let Some(dead) = query.first::<DeadProcess>(conn).optional()? else {
            return Ok(None);
        };
        diesel::delete(processes::table.find(process)).execute(conn)?;
        Ok(Some(dead))
    }
}
