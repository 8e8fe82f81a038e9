//! MySQL 8.0.1+ / MariaDB 10.6+ (InnoDB). Pooled connections run at READ COMMITTED (set when
//! they open), so `SKIP LOCKED` skips rather than gap-locks and an empty-queue claim never
//! blocks an enqueue. Neither server has a usable `RETURNING`: a row that decides a race is
//! read `FOR UPDATE` (`SKIP LOCKED` where waiting is pointless) and then deleted by primary key
//! in the same transaction. Ids of new jobs come from `LAST_INSERT_ID()`. Each registered
//! process holds a named lock (`GET_LOCK`) on a dedicated connection ([`sessions`]); there is
//! no LISTEN, so other processes' enqueues are seen by polling. The fixed statements are in
//! [`sql`].

use std::collections::HashSet;
use std::sync::OnceLock;

use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::mysql::Mysql as MysqlBackend;
use diesel::prelude::*;
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Datetime, Text};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{expect_variant, DeadProcess, Dialect, SessionLiveness};
use crate::model::{ClaimToken, ClaimedJob, JobId, NewJob, ProcessId, QueuePattern};
use crate::store::connection::{open_mysql, DbConnection};
use crate::store::params::{like_prefix, Claim, JobInsert, ID_CHUNK};
use crate::store::schema::{
    solidq_claimed_executions as claimed, solidq_jobs as jobs, solidq_pauses as pauses, solidq_processes as processes,
    solidq_ready_executions as ready, solidq_scheduled_executions as scheduled,
};
use crate::store::sql_types::{at, At};

mod sessions;
mod sql;

use sessions::Sessions;
use sql::*;

/// The MySQL migrations, embedded at build time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/mysql");

/// MySQL's limit on bind parameters per statement.
const MAX_BINDS: usize = 65_535;

/// Rows per multi-row INSERT: big enough to amortize the round trip, small enough to stay far
/// below `max_allowed_packet` (16 MB on MySQL 8, 16 MB on MariaDB 10.6+).
const MAX_ROWS_PER_INSERT: usize = 1_000;

/// Bytes of job arguments per multi-row INSERT (one job alone may exceed it).
const MAX_ARGUMENT_BYTES_PER_INSERT: usize = 4 << 20;

/// How long `migrate` waits for another process's migration run.
const MIGRATION_LOCK_WAIT_SECS: i64 = 60;

/// The MySQL dialect, with the dedicated session connections of the processes this store
/// registered.
pub struct Mysql {
    /// The URL as configured, for the migration and session connections.
    url: String,
    sessions: Sessions,
    /// How this server numbers a multi-row insert (see [`IdAllocation`]), read once.
    ids: OnceLock<IdAllocation>,
}

impl std::fmt::Debug for Mysql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mysql").finish_non_exhaustive()
    }
}

impl Mysql {
    /// A dialect whose dedicated connections (migrations, sessions) go to `url`.
    pub fn new(url: String) -> Self {
        Mysql { sessions: Sessions::new(url.clone()), url, ids: OnceLock::new() }
    }

    /// The dialect's SQL only, on a connection the caller opened: no sessions.
    pub fn sql_only() -> Self {
        Mysql::new(String::new())
    }
}

/// How the ids of one multi-row INSERT relate to `LAST_INSERT_ID()`, its first id.
#[derive(Debug, Clone, Copy)]
enum IdAllocation {
    /// `innodb_autoinc_lock_mode` 0 or 1: a multi-row insert of known size gets its ids in
    /// one step, `first + i × step`, with nobody else's in between.
    Consecutive { step: i64 },
    /// Mode 2 (MySQL 8's default): concurrent inserts may interleave ids, so each job is
    /// inserted alone. Other sessions' rows may sit inside any id range, so reading rows back
    /// by range would be wrong.
    OneByOne,
}

impl IdAllocation {
    fn read(conn: &mut MysqlConnection) -> QueryResult<Self> {
        let settings: AutoincSettings = sql_query(AUTOINC_SQL).get_result(conn)?;
        Ok(if settings.lock_mode <= 1 {
            IdAllocation::Consecutive { step: settings.increment.max(1) }
        } else {
            IdAllocation::OneByOne
        })
    }
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

/// Inserts the jobs and their executions; the caller holds a transaction. Reads the server's
/// auto-increment settings on each call (the dialect caches them instead).
pub(crate) fn enqueue_on(
    conn: &mut MysqlConnection,
    new_jobs: &[NewJob],
    now: NaiveDateTime,
) -> QueryResult<Vec<JobId>> {
    let ids = IdAllocation::read(conn)?;
    enqueue_with(conn, new_jobs, now, ids)
}

/// The jobs split into multi-row INSERTs, bounded in rows and in argument bytes.
fn insert_chunks(new_jobs: &[NewJob]) -> Vec<&[NewJob]> {
    let max_rows = JobInsert::rows_per_statement(MAX_BINDS).min(MAX_ROWS_PER_INSERT);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < new_jobs.len() {
        let (mut end, mut bytes) = (start, 0);
        while end < new_jobs.len() && end - start < max_rows {
            bytes += new_jobs[end].arguments.len();
            if end > start && bytes > MAX_ARGUMENT_BYTES_PER_INSERT {
                break;
            }
            end += 1;
        }
        chunks.push(&new_jobs[start..end]);
        start = end;
    }
    chunks
}

fn last_insert_id(conn: &mut MysqlConnection) -> QueryResult<i64> {
    let row: Number = sql_query(LAST_INSERT_ID_SQL).get_result(conn)?;
    row.n.ok_or(diesel::result::Error::NotFound)
}

fn enqueue_with(
    conn: &mut MysqlConnection,
    new_jobs: &[NewJob],
    now: NaiveDateTime,
    allocation: IdAllocation,
) -> QueryResult<Vec<JobId>> {
    let mut ids = Vec::with_capacity(new_jobs.len());
    match allocation {
        IdAllocation::Consecutive { step } => {
            for chunk in insert_chunks(new_jobs) {
                let rows: Vec<JobInsert<'_>> = chunk.iter().map(|job| JobInsert::new(job, now)).collect();
                diesel::insert_into(jobs::table).values(&rows).execute(conn)?;
                let first = last_insert_id(conn)?;
                ids.extend((0..chunk.len() as i64).map(|i| first + i * step));
            }
        }
        IdAllocation::OneByOne => {
            for job in new_jobs {
                diesel::insert_into(jobs::table).values(&JobInsert::new(job, now)).execute(conn)?;
                ids.push(last_insert_id(conn)?);
            }
        }
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
    for chunk in due.chunks(MAX_ROWS_PER_INSERT) {
        diesel::insert_into(ready::table).values(chunk).execute(conn)?;
    }
    for chunk in later.chunks(MAX_ROWS_PER_INSERT) {
        diesel::insert_into(scheduled::table).values(chunk).execute(conn)?;
    }
    Ok(ids)
}

/// `sql` (with `{ids}` for the placeholder list) bound to `ids`, then `extra` binds.
fn with_ids<'a>(sql: &str, ids: &[i64]) -> BoxedSqlQuery<'a, MysqlBackend, diesel::query_builder::SqlQuery> {
    let mut query = sql_query(sql.replace("{ids}", &placeholders(ids.len()))).into_boxed::<MysqlBackend>();
    for &id in ids {
        query = query.bind::<BigInt, _>(id);
    }
    query
}

/// Locks the execution rows of `table` with these ids (those that still exist; waiting for
/// the ones being written), a chunk at a time, and returns them.
fn lock_rows(conn: &mut MysqlConnection, table: &str, ids: &[i64], skip_locked: bool) -> QueryResult<Vec<IdJobRow>> {
    let mut ids = ids.to_vec();
    // One lock order for every transaction: ascending primary key.
    ids.sort_unstable();
    ids.dedup();
    let skip = if skip_locked { " SKIP LOCKED" } else { "" };
    let sql = format!("SELECT id, job_id FROM {table} WHERE id IN ({{ids}}) ORDER BY id FOR UPDATE{skip}");
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(ID_CHUNK) {
        rows.extend(with_ids(&sql, chunk).load::<IdJobRow>(conn)?);
    }
    Ok(rows)
}

/// Deletes the claimed executions with these ids (already locked by this transaction).
fn delete_claims(conn: &mut MysqlConnection, ids: &[i64]) -> QueryResult<()> {
    for chunk in ids.chunks(ID_CHUNK) {
        diesel::delete(claimed::table.filter(claimed::id.eq_any(chunk))).execute(conn)?;
    }
    Ok(())
}

/// Claims for `process`: the process row share-locked, then per queue pattern the ready rows
/// read `FOR UPDATE SKIP LOCKED` and deleted by id, then the claims inserted.
fn claim_on(conn: &mut MysqlConnection, claim: &Claim<'_>) -> QueryResult<Vec<ClaimedJob>> {
    let Claim { process, queues, kinds, limit, now } = *claim;
    if kinds.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let alive: Vec<Number> = sql_query(LOCK_PROCESS_SQL).bind::<BigInt, _>(process).load(conn)?;
    if alive.is_empty() {
        return Ok(Vec::new());
    }
    // Read apart (a small table), so that the locking read below touches the ready rows only.
    let paused: Vec<String> = pauses::table.select(pauses::queue_name).load(conn)?;
    let paused_filter = if paused.is_empty() {
        "TRUE".to_string()
    } else {
        format!("queue_name NOT IN ({})", placeholders(paused.len()))
    };
    let mut picked: Vec<(JobId, NaiveDateTime)> = Vec::new();
    for pattern in queues {
        let remaining = limit.saturating_sub(picked.len());
        if remaining == 0 {
            break;
        }
        let (filter, queue_binds) = match pattern {
            QueuePattern::All => ("TRUE", vec![]),
            QueuePattern::Exact(name) => ("queue_name = ?", vec![name.clone()]),
            // The escape character is bound too: a `'\\'` literal means one thing or another
            // depending on the server's NO_BACKSLASH_ESCAPES mode.
            QueuePattern::Prefix(prefix) => ("queue_name LIKE ? ESCAPE ?", vec![like_prefix(prefix), "\\".to_string()]),
        };
        let sql = CLAIM_READY_SQL
            .replace("{filter}", filter)
            .replace("{kinds}", &placeholders(kinds.len()))
            .replace("{paused}", &paused_filter);
        let mut query = sql_query(sql).into_boxed::<MysqlBackend>();
        for text in queue_binds.into_iter().chain(kinds.iter().cloned()).chain(paused.iter().cloned()) {
            query = query.bind::<Text, _>(text);
        }
        let rows: Vec<ReadyRow> = query.bind::<BigInt, _>(i64::try_from(remaining).unwrap_or(i64::MAX)).load(conn)?;
        // Deleted at once so that a later pattern cannot pick the same rows.
        let ready_ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        for chunk in ready_ids.chunks(ID_CHUNK) {
            diesel::delete(ready::table.filter(ready::id.eq_any(chunk))).execute(conn)?;
        }
        picked.extend(rows.into_iter().map(|row| (row.job_id, row.created_at)));
    }
    let mut claims: std::collections::HashMap<JobId, i64> = std::collections::HashMap::with_capacity(picked.len());
    let mut details: std::collections::HashMap<JobId, super::ClaimedRow> =
        std::collections::HashMap::with_capacity(picked.len());
    let picked_ids: Vec<JobId> = picked.iter().map(|(job_id, _)| *job_id).collect();
    for chunk in picked_ids.chunks(MAX_ROWS_PER_INSERT) {
        let rows: Vec<ClaimInsert> =
            chunk.iter().map(|&job_id| ClaimInsert { job_id, process_id: process, created_at: at(now) }).collect();
        diesel::insert_into(claimed::table).values(&rows).execute(conn)?;
        // job_id is unique in the table: exact whatever the auto-increment mode.
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

impl Dialect for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn begin_write(&self, conn: &mut DbConnection) -> QueryResult<()> {
        // The session is READ COMMITTED already (set when the pooled connection opened).
        AnsiTransactionManager::begin_transaction(expect_variant!(conn, Mysql))
    }

    fn begin_read(&self, conn: &mut DbConnection) -> QueryResult<()> {
        // SET TRANSACTION (without SESSION) applies to the next transaction only; the
        // consistent snapshot is taken at START, so every read sees the same one.
        AnsiTransactionManager::begin_transaction_sql(
            expect_variant!(conn, Mysql),
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT",
        )
    }

    fn retry_pause(&self, retry: usize) -> std::time::Duration {
        super::jittered_pause(retry)
    }

    fn retryable(&self, err: &diesel::result::Error) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match err {
            // 1213 (deadlock) from a prepared statement.
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
            // Two enqueues of one unique key raced: run again, and the second finds the first.
            // No constraint name on MySQL; MySQL 8 writes the key as `solidq_jobs.index_…`.
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                info.message().contains("index_solidq_jobs_on_unique_key")
            }
            // 1213 through `sql_query`/`batch_execute`, and 1205 (lock wait timeout: the
            // statement was rolled back, and the store rolls back the rest), by message.
            Error::DatabaseError(_, info) => {
                let message = info.message();
                message.starts_with("Deadlock found") || message.starts_with("Lock wait timeout exceeded")
            }
            _ => false,
        }
    }

    fn migrate(&self, _conn: &mut DbConnection) -> Result<usize, String> {
        // A connection of its own: the named lock is released when it closes, whatever
        // happens (error, panic). DDL commits implicitly, so there is no transaction to lean
        // on; every statement of the migration is idempotent instead, and a run cut half-way
        // is run again whole.
        let mut conn = open_mysql(&self.url).map_err(|err| format!("connecting to migrate: {err}"))?;
        let key = self.sessions.database_key(&mut conn).map_err(|err| err.to_string())?;
        let got: Number = sql_query("SELECT GET_LOCK(?, ?) AS n")
            .bind::<Text, _>(format!("solidq:migrate:{key:016x}"))
            .bind::<BigInt, _>(MIGRATION_LOCK_WAIT_SECS)
            .get_result(&mut conn)
            .map_err(|err| err.to_string())?;
        if got.n != Some(1) {
            return Err(format!(
                "another process has been migrating this database for {MIGRATION_LOCK_WAIT_SECS} s; try again"
            ));
        }
        let ran = conn.run_pending_migrations(MIGRATIONS).map_err(|err| err.to_string())?.len();
        Ok(ran)
    }

    fn enqueue(&self, conn: &mut DbConnection, jobs: &[NewJob], now: NaiveDateTime) -> QueryResult<Vec<JobId>> {
        let conn = expect_variant!(conn, Mysql);
        let allocation = match self.ids.get() {
            Some(allocation) => *allocation,
            None => *self.ids.get_or_init(|| IdAllocation::read(conn).unwrap_or(IdAllocation::OneByOne)),
        };
        enqueue_with(conn, jobs, now, allocation)
    }

    fn claim(&self, conn: &mut DbConnection, claim: &Claim<'_>) -> QueryResult<Vec<ClaimedJob>> {
        claim_on(expect_variant!(conn, Mysql), claim)
    }

    fn take_claims(&self, conn: &mut DbConnection, tokens: &[ClaimToken]) -> QueryResult<Vec<ClaimToken>> {
        let conn = expect_variant!(conn, Mysql);
        let wanted: HashSet<ClaimToken> = tokens.iter().copied().collect();
        let claim_ids: Vec<i64> = tokens.iter().map(|t| t.claim_id).collect();
        // Waits for a claim another transaction is taking: that deletion decides.
        let present = lock_rows(conn, "solidq_claimed_executions", &claim_ids, false)?;
        // Pairs, so that a claim id never matches another job's token.
        let mine: Vec<ClaimToken> = present
            .into_iter()
            .map(|row| ClaimToken { job_id: row.job_id, claim_id: row.id })
            .filter(|token| wanted.contains(token))
            .collect();
        let ids: Vec<i64> = mine.iter().map(|t| t.claim_id).collect();
        delete_claims(conn, &ids)?;
        Ok(mine)
    }

    fn lock_waiting(&self, conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<Vec<JobId>> {
        super::waiting_for_update!(expect_variant!(conn, Mysql), ids)
    }

    fn lock_key(&self, conn: &mut DbConnection, key: &str) -> QueryResult<()> {
        // The row's X lock is held until commit, as PostgreSQL's transaction advisory lock.
        sql_query(LOCK_KEY_SQL).bind::<Text, _>(key).execute(expect_variant!(conn, Mysql))?;
        Ok(())
    }

    fn take_claims_of(&self, conn: &mut DbConnection, process: ProcessId) -> QueryResult<Vec<JobId>> {
        let conn = expect_variant!(conn, Mysql);
        let rows: Vec<IdJobRow> =
            sql_query("SELECT id, job_id FROM solidq_claimed_executions WHERE process_id = ? ORDER BY id FOR UPDATE")
                .bind::<BigInt, _>(process)
                .load(conn)?;
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        delete_claims(conn, &ids)?;
        Ok(rows.into_iter().map(|row| row.job_id).collect())
    }

    fn take_orphan_claims(&self, conn: &mut DbConnection) -> QueryResult<Vec<JobId>> {
        let conn = expect_variant!(conn, Mysql);
        // A plain read finds the candidates; then only their primary keys are locked, skipping
        // the claims a completion is taking. A process row never comes back once deleted
        // (ids are not reused), so a candidate stays an orphan.
        let candidates: Vec<IdJobRow> = sql_query(ORPHAN_CANDIDATES_SQL).load(conn)?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = candidates.iter().map(|row| row.id).collect();
        let locked = lock_rows(conn, "solidq_claimed_executions", &ids, true)?;
        let ids: Vec<i64> = locked.iter().map(|row| row.id).collect();
        delete_claims(conn, &ids)?;
        Ok(locked.into_iter().map(|row| row.job_id).collect())
    }

    fn take_due(&self, conn: &mut DbConnection, now: NaiveDateTime, batch: usize) -> QueryResult<Vec<JobId>> {
        let conn = expect_variant!(conn, Mysql);
        let rows: Vec<IdJobRow> = sql_query(TAKE_DUE_SQL)
            .bind::<Datetime, _>(now)
            .bind::<BigInt, _>(i64::try_from(batch).unwrap_or(i64::MAX))
            .load(conn)?;
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        for chunk in ids.chunks(ID_CHUNK) {
            diesel::delete(scheduled::table.filter(scheduled::id.eq_any(chunk))).execute(conn)?;
        }
        Ok(rows.into_iter().map(|row| row.job_id).collect())
    }

    fn delete_process(
        &self,
        conn: &mut DbConnection,
        process: ProcessId,
        cutoff: Option<NaiveDateTime>,
    ) -> QueryResult<Option<DeadProcess>> {
        let conn = expect_variant!(conn, Mysql);
        // A locking read sees the latest committed row: a second watchdog waits for the first
        // to commit and then finds nothing; a heartbeat committed first makes the cutoff fail.
        let found: Option<DeadRow> = match cutoff {
            Some(cutoff) => sql_query(format!("{DEAD_PROCESS_SQL} AND last_heartbeat_at < ? FOR UPDATE"))
                .bind::<BigInt, _>(process)
                .bind::<Datetime, _>(cutoff)
                .get_result(conn)
                .optional()?,
            None => sql_query(format!("{DEAD_PROCESS_SQL} FOR UPDATE"))
                .bind::<BigInt, _>(process)
                .get_result(conn)
                .optional()?,
        };
        let Some(dead) = found else {
            return Ok(None);
        };
        diesel::delete(processes::table.find(process)).execute(conn)?;
        Ok(Some(DeadProcess {
            name: dead.name,
            hostname: dead.hostname,
            pid: dead.pid,
            last_heartbeat_at: dead.last_heartbeat_at,
        }))
    }

    fn hold_term(&self, conn: &mut DbConnection, term: i64) -> QueryResult<bool> {
        // `LOCK IN SHARE MODE`: MariaDB 10.11 has no `FOR SHARE`.
        let rows: Vec<Number> =
            sql_query("SELECT CAST(term AS SIGNED) AS n FROM solidq_leaders WHERE name = ? LOCK IN SHARE MODE")
                .bind::<Text, _>(crate::store::leadership::MAINTENANCE)
                .load(expect_variant!(conn, Mysql))?;
        Ok(rows.first().and_then(|row| row.n) == Some(term))
    }

    fn sessions(&self) -> Option<&dyn SessionLiveness> {
        Some(&self.sessions)
    }
}
