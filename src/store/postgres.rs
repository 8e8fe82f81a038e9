//! PostgreSQL backend.
//!
//! Claims and dispatch are single statements with `FOR UPDATE SKIP LOCKED`, so workers never
//! wait for each other. Each registered process also holds a session-level advisory lock on a
//! dedicated connection for its whole life: when the process dies, PostgreSQL ends its session
//! and frees the lock, which [`Store::sessions_gone`] detects long before a heartbeat expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamp};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::pool::{pg_pool, with_connect_timeout, PgPool};
use super::queries::{
    death_record, failure_json, job_insert_chunk, like_prefix, DeadProcess, JobInsert, ProcessInsert,
};
use super::schema::{solidq_claimed_executions as claimed, solidq_jobs as jobs, solidq_processes as processes};
use super::{
    Beat, ClaimToken, ClaimedJob, DeathCause, DeathPolicy, EnqueueConnection, FailureRecord, Fenced, JobCounts, JobRow,
    NewProcess, ProcessId, ProcessRow, QueueCounts, QueuePattern, ReapOutcome, Store, StoreError, StoreResult,
};
use crate::job::{JobId, NewJob};

/// The PostgreSQL migrations, embedded at build time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// PostgreSQL's limit on bind parameters per statement.
const MAX_BINDS: usize = 65_535;

mod shared {
    crate::store::queries::shared_queries!(diesel::PgConnection);
}

/// The dedicated connection holding one process's advisory lock.
struct Session {
    /// `None` after a failed reconnect or once the process is gone.
    conn: Option<PgConnection>,
    /// Whether `conn` holds the lock.
    locked: bool,
    /// Set when the process deregistered or was reaped: never reconnect.
    closed: bool,
}

/// PostgreSQL store: a pool plus one dedicated lock connection per registered process.
pub struct PgStore {
    /// The URL as configured plus `connect_timeout`, for the dedicated connections.
    url: String,
    pool: PgPool,
    sessions: Mutex<HashMap<ProcessId, Arc<Mutex<Session>>>>,
    /// First advisory-lock key: a stable hash of `current_schema()`.
    schema_key: OnceLock<i32>,
    /// When one of this store's own sessions was last found broken. A session lost by this
    /// process too means the server probably restarted and every live process is re-taking
    /// its lock: free locks prove nothing until [`SESSION_RESTART_GRACE`] has passed.
    session_lost_at: Mutex<Option<std::time::Instant>>,
}

/// How long after losing one of its own sessions a store reports no session as gone.
pub const SESSION_RESTART_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = BigInt)]
    job_id: i64,
    #[diesel(sql_type = BigInt)]
    claim_id: i64,
    #[diesel(sql_type = Text)]
    class_name: String,
    #[diesel(sql_type = Text)]
    arguments: String,
    #[diesel(sql_type = Text)]
    queue_name: String,
    #[diesel(sql_type = Integer)]
    priority: i32,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Integer)]
    max_attempts: i32,
}

#[derive(QueryableByName)]
struct SchemaName {
    #[diesel(sql_type = Nullable<Text>)]
    schema: Option<String>,
}

#[derive(QueryableByName)]
struct Acquired {
    #[diesel(sql_type = Bool)]
    acquired: bool,
}

/// Takes up to `$3` ready rows (filtered by `{filter}`), claims them for process `$1` at `$2`
/// and counts the attempt, in one statement.
const CLAIM_SQL: &str = "
WITH picked AS (
    SELECT id, job_id FROM solidq_ready_executions
    WHERE {filter}
    ORDER BY priority, job_id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), taken AS (
    DELETE FROM solidq_ready_executions r USING picked WHERE r.id = picked.id
    RETURNING r.job_id
), claims AS (
    INSERT INTO solidq_claimed_executions (job_id, process_id, created_at)
    SELECT job_id, $1, $2 FROM taken ORDER BY job_id
    RETURNING id, job_id
)
UPDATE solidq_jobs j SET attempts = j.attempts + 1, updated_at = $2
FROM claims WHERE j.id = claims.job_id
RETURNING j.id AS job_id, claims.id AS claim_id, j.class_name, j.arguments, j.queue_name,
          j.priority, j.attempts, j.max_attempts";

/// Moves up to `$2` scheduled rows due at `$1` to ready.
const DISPATCH_SQL: &str = "
WITH due AS (
    SELECT id FROM solidq_scheduled_executions
    WHERE scheduled_at <= $1
    ORDER BY scheduled_at, priority, job_id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), moved AS (
    DELETE FROM solidq_scheduled_executions s USING due WHERE s.id = due.id
    RETURNING s.job_id, s.queue_name, s.priority
)
INSERT INTO solidq_ready_executions (job_id, queue_name, priority, created_at)
SELECT job_id, queue_name, priority, $1 FROM moved";

/// Returns claims whose process row is gone to ready at `$1`.
const RELEASE_ORPHANS_SQL: &str = "
WITH orphans AS (
    SELECT c.id FROM solidq_claimed_executions c
    WHERE NOT EXISTS (SELECT 1 FROM solidq_processes p WHERE p.id = c.process_id)
    FOR UPDATE OF c SKIP LOCKED
), taken AS (
    DELETE FROM solidq_claimed_executions c USING orphans WHERE c.id = orphans.id
    RETURNING c.job_id
)
INSERT INTO solidq_ready_executions (job_id, queue_name, priority, created_at)
SELECT j.id, j.queue_name, j.priority, $1 FROM taken JOIN solidq_jobs j ON j.id = taken.job_id";

/// FNV-1a: a 32-bit hash that is the same in every build and on every machine.
fn stable_hash(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

/// Second advisory-lock key of a process: its id as int4.
fn process_key(process: ProcessId) -> i32 {
    process as i32
}

fn lock_or_recover<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Inserts the jobs and their executions; the caller holds a transaction.
fn enqueue_on(conn: &mut PgConnection, new_jobs: &[NewJob], now: NaiveDateTime) -> QueryResult<Vec<JobId>> {
    let mut ids = Vec::with_capacity(new_jobs.len());
    for chunk in new_jobs.chunks(job_insert_chunk(MAX_BINDS)) {
        let rows: Vec<JobInsert<'_>> = chunk.iter().map(|job| JobInsert::new(job, now)).collect();
        let mut chunk_ids: Vec<JobId> =
            diesel::insert_into(jobs::table).values(&rows).returning(jobs::id).get_results(conn)?;
        // Ids are drawn from the sequence row by row in VALUES order, so ascending ids are
        // input order whatever order RETURNING uses.
        chunk_ids.sort_unstable();
        ids.extend(chunk_ids);
    }
    shared::insert_executions(conn, &ids, now)?;
    Ok(ids)
}

impl EnqueueConnection for PgConnection {
    fn enqueue_jobs(&mut self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.transaction(|conn| enqueue_on(conn, jobs, now)).map_err(StoreError::query("enqueueing jobs"))
    }
}

/// Deletes and returns the job ids of every claim of `process`; the DELETE decides, so a
/// concurrent finish either wins (the claim is gone here) or finds its token stale.
fn take_claims_of(conn: &mut PgConnection, process: ProcessId) -> QueryResult<Vec<JobId>> {
    diesel::delete(claimed::table.filter(claimed::process_id.eq(process))).returning(claimed::job_id).get_results(conn)
}

impl PgStore {
    /// Connects a pool of `pool_size` connections to `url`. Does not migrate.
    pub fn connect(url: &str, pool_size: u32) -> StoreResult<Self> {
        let url = with_connect_timeout(url);
        let pool = pg_pool(&url, pool_size)?;
        Ok(PgStore {
            url,
            pool,
            sessions: Mutex::new(HashMap::new()),
            schema_key: OnceLock::new(),
            session_lost_at: Mutex::new(None),
        })
    }

    /// Runs `f` in a transaction on a pooled connection.
    fn run<T>(&self, action: &'static str, f: impl FnOnce(&mut PgConnection) -> QueryResult<T>) -> StoreResult<T> {
        let mut conn = self.pool.get().map_err(StoreError::connection(action))?;
        let conn: &mut PgConnection = &mut conn;
        conn.transaction(f).map_err(StoreError::query(action))
    }

    /// Runs `f` in a read-only REPEATABLE READ transaction (one snapshot).
    fn read<T>(&self, action: &'static str, f: impl FnOnce(&mut PgConnection) -> QueryResult<T>) -> StoreResult<T> {
        let mut conn = self.pool.get().map_err(StoreError::connection(action))?;
        let conn: &mut PgConnection = &mut conn;
        conn.build_transaction().read_only().repeatable_read().run(f).map_err(StoreError::query(action))
    }

    /// The first advisory-lock key, from the connection's `current_schema()` (every connection
    /// of this store uses the same URL, hence the same schema).
    fn schema_key(&self, conn: &mut PgConnection) -> QueryResult<i32> {
        if let Some(key) = self.schema_key.get() {
            return Ok(*key);
        }
        let row: SchemaName = sql_query("SELECT current_schema() AS schema").get_result(conn)?;
        let key = stable_hash(row.schema.as_deref().unwrap_or("")) as i32;
        Ok(*self.schema_key.get_or_init(|| key))
    }

    fn try_lock(&self, conn: &mut PgConnection, process: ProcessId) -> QueryResult<bool> {
        let key = self.schema_key(conn)?;
        let row: Acquired = sql_query("SELECT pg_try_advisory_lock($1, $2) AS acquired")
            .bind::<Integer, _>(key)
            .bind::<Integer, _>(process_key(process))
            .get_result(conn)?;
        Ok(row.acquired)
    }

    fn session(&self, process: ProcessId) -> Option<Arc<Mutex<Session>>> {
        lock_or_recover(&self.sessions).get(&process).cloned()
    }

    /// Closes the process's dedicated connection (freeing its lock), if this store holds it.
    fn drop_session(&self, process: ProcessId) {
        let session = lock_or_recover(&self.sessions).remove(&process);
        if let Some(session) = session {
            let mut session = lock_or_recover(&session);
            session.closed = true;
            session.locked = false;
            session.conn = None;
        }
    }

    /// Makes sure the process's dedicated connection is alive and holds its lock; reconnects
    /// and re-takes the lock if the connection broke. Returns whether it had to.
    fn ensure_session(&self, process: ProcessId) -> StoreResult<bool> {
        let action = "keeping the process session";
        let Some(session) = self.session(process) else {
            return Ok(false);
        };
        let mut session = lock_or_recover(&session);
        if session.closed {
            return Ok(false);
        }
        let alive = match session.conn.as_mut() {
            Some(conn) => diesel::connection::SimpleConnection::batch_execute(conn, "SELECT 1").is_ok(),
            None => false,
        };
        if alive && session.locked {
            return Ok(false);
        }
        if !alive || !session.locked {
            *lock_or_recover(&self.session_lost_at) = Some(std::time::Instant::now());
        }
        if !alive {
            session.locked = false;
            session.conn = None;
            let conn = PgConnection::establish(&self.url)
                .map_err(|err| StoreError::Connection { action, message: err.to_string() })?;
            session.conn = Some(conn);
        }
        let Some(conn) = session.conn.as_mut() else {
            return Ok(false);
        };
        // Try, never wait: if the old session still holds the lock (the server has not
        // noticed it died yet), the next check tries again.
        let locked = self.try_lock(conn, process).map_err(StoreError::query(action))?;
        session.locked = locked;
        if !locked {
            return Err(StoreError::Connection {
                action,
                message: format!("the session lock of process {process} is still held by an earlier session"),
            });
        }
        Ok(true)
    }

    /// The PostgreSQL backend pid of the session holding `process`'s lock, if this store
    /// registered the process and the session is up (for diagnostics and tests).
    pub fn session_backend_pid(&self, process: ProcessId) -> Option<i32> {
        #[derive(QueryableByName)]
        struct BackendPid {
            #[diesel(sql_type = Integer)]
            pid: i32,
        }
        let session = self.session(process)?;
        let mut session = lock_or_recover(&session);
        let conn = session.conn.as_mut()?;
        let row: BackendPid = sql_query("SELECT pg_backend_pid() AS pid").get_result(conn).ok()?;
        Some(row.pid)
    }
}

impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn migrate(&self) -> StoreResult<usize> {
        let action = "migrating the database";
        let mut conn = self.pool.get().map_err(StoreError::connection(action))?;
        // All pending migrations in one transaction (each in a savepoint), serialized per
        // schema by a transaction-level advisory lock so concurrent starts apply them once.
        conn.transaction::<_, Box<dyn std::error::Error + Send + Sync>, _>(|conn| {
            let schema = self.schema_key(conn)?;
            let key = (i64::from(stable_hash("solidq migrations")) << 32) | i64::from(schema as u32);
            sql_query("SELECT pg_advisory_xact_lock($1)").bind::<BigInt, _>(key).execute(conn)?;
            Ok(conn.run_pending_migrations(MIGRATIONS)?.len())
        })
        .map_err(|err| StoreError::Migration(err.to_string()))
    }

    fn enqueue(&self, jobs: &[NewJob], now: NaiveDateTime) -> StoreResult<Vec<JobId>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.run("enqueueing jobs", |conn| enqueue_on(conn, jobs, now))
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
        self.run("claiming jobs", |conn| {
            // KEY SHARE: a concurrent reap (DELETE) waits for this claim to commit and then
            // sees its claims, while heartbeats (UPDATE of non-key columns) do not wait.
            let alive = processes::table
                .find(process)
                .select(processes::id)
                .for_key_share()
                .first::<i64>(conn)
                .optional()?
                .is_some();
            if !alive {
                return Ok(Vec::new());
            }
            let mut out: Vec<ClaimedJob> = Vec::new();
            for pattern in queues {
                let remaining = limit.saturating_sub(out.len());
                if remaining == 0 {
                    break;
                }
                let (filter, bind) = match pattern {
                    QueuePattern::All => ("TRUE", None),
                    QueuePattern::Exact(name) => ("queue_name = $4", Some(name.clone())),
                    QueuePattern::Prefix(prefix) => ("queue_name LIKE $4 ESCAPE '\\'", Some(like_prefix(prefix))),
                };
                let mut query = sql_query(CLAIM_SQL.replace("{filter}", filter))
                    .into_boxed::<diesel::pg::Pg>()
                    .bind::<BigInt, _>(process)
                    .bind::<Timestamp, _>(now)
                    .bind::<BigInt, _>(i64::try_from(remaining).unwrap_or(i64::MAX));
                if let Some(value) = bind {
                    query = query.bind::<Text, _>(value);
                }
                let mut rows: Vec<ClaimedRow> = query.load(conn)?;
                rows.sort_unstable_by_key(|row| (row.priority, row.job_id));
                out.extend(rows.into_iter().map(|row| ClaimedJob {
                    token: ClaimToken { job_id: row.job_id, claim_id: row.claim_id },
                    kind: row.class_name,
                    arguments: row.arguments,
                    queue: row.queue_name,
                    priority: row.priority,
                    attempts: row.attempts,
                    max_attempts: row.max_attempts,
                }));
            }
            Ok(out)
        })
    }

    fn finish(&self, token: ClaimToken, now: NaiveDateTime) -> StoreResult<Fenced> {
        self.run("finishing a job", |conn| shared::finish(conn, token, now))
    }

    fn fail(&self, token: ClaimToken, error: &FailureRecord, now: NaiveDateTime) -> StoreResult<Fenced> {
        let error = failure_json(error);
        self.run("failing a job", |conn| shared::fail(conn, token, &error, now))
    }

    fn retry(
        &self,
        token: ClaimToken,
        error: &FailureRecord,
        run_at: NaiveDateTime,
        now: NaiveDateTime,
    ) -> StoreResult<Fenced> {
        let error = failure_json(error);
        self.run("scheduling a retry", |conn| shared::retry(conn, token, &error, run_at, now))
    }

    fn release(&self, token: ClaimToken, now: NaiveDateTime) -> StoreResult<Fenced> {
        self.run("releasing a claim", |conn| shared::release(conn, token, now))
    }

    fn dispatch_due(&self, now: NaiveDateTime, batch: usize) -> StoreResult<usize> {
        if batch == 0 {
            return Ok(0);
        }
        let action = "dispatching scheduled jobs";
        let mut conn = self.pool.get().map_err(StoreError::connection(action))?;
        sql_query(DISPATCH_SQL)
            .bind::<Timestamp, _>(now)
            .bind::<BigInt, _>(i64::try_from(batch).unwrap_or(i64::MAX))
            .execute(&mut conn)
            .map_err(StoreError::query(action))
    }

    fn register_process(&self, process: &NewProcess, now: NaiveDateTime) -> StoreResult<ProcessId> {
        let action = "registering the process";
        let mut conn = PgConnection::establish(&self.url)
            .map_err(|err| StoreError::Connection { action, message: err.to_string() })?;
        // Row and lock in one transaction on the dedicated connection: nobody can see the row
        // while its lock is free.
        let id = conn
            .transaction(|conn| {
                let id: ProcessId = diesel::insert_into(processes::table)
                    .values(ProcessInsert::new(process, now))
                    .returning(processes::id)
                    .get_result(conn)?;
                let key = self.schema_key(conn)?;
                sql_query("SELECT pg_advisory_lock($1, $2)")
                    .bind::<Integer, _>(key)
                    .bind::<Integer, _>(process_key(id))
                    .execute(conn)?;
                Ok(id)
            })
            .map_err(StoreError::query(action))?;
        let session = Session { conn: Some(conn), locked: true, closed: false };
        lock_or_recover(&self.sessions).insert(id, Arc::new(Mutex::new(session)));
        Ok(id)
    }

    fn heartbeat(&self, process: ProcessId, now: NaiveDateTime) -> StoreResult<Beat> {
        let action = "writing the heartbeat";
        let beat = {
            let mut conn = self.pool.get().map_err(StoreError::connection(action))?;
            shared::heartbeat(&mut conn, process, now).map_err(StoreError::query(action))?
        };
        if beat == Beat::Missing {
            // The row is gone (reaped): its lock protects nothing any more.
            self.drop_session(process);
        }
        Ok(beat)
    }

    fn keep_session(&self, process: ProcessId) -> StoreResult<bool> {
        self.ensure_session(process)
    }

    fn deregister(&self, process: ProcessId, now: NaiveDateTime) -> StoreResult<usize> {
        let released = self.run("deregistering the process", |conn| {
            // The row first: this waits for the process's in-flight claims to commit, so the
            // next statement sees them.
            shared::delete_process(conn, process)?;
            let ids = take_claims_of(conn, process)?;
            shared::hand_back(conn, &ids, now)?;
            Ok(ids.len())
        })?;
        self.drop_session(process);
        Ok(released)
    }

    fn processes(&self) -> StoreResult<Vec<ProcessRow>> {
        self.read("listing processes", shared::processes)
    }

    fn sessions_gone(&self, candidates: &[ProcessId]) -> StoreResult<Vec<ProcessId>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let recently_lost =
            lock_or_recover(&self.session_lost_at).is_some_and(|at| at.elapsed() < SESSION_RESTART_GRACE);
        if recently_lost {
            return Ok(Vec::new());
        }
        let action = "probing process sessions";
        let mut conn = self.pool.get().map_err(StoreError::connection(action))?;
        let schema = self.schema_key(&mut conn).map_err(StoreError::query(action))?;
        let by_key: HashMap<i32, ProcessId> = candidates.iter().map(|&p| (process_key(p), p)).collect();
        let keys: Vec<i32> = by_key.keys().copied().collect();
        // One round trip whatever the number of processes: try every lock, keep the ones taken,
        // and give those straight back.
        #[derive(QueryableByName)]
        struct Taken {
            #[diesel(sql_type = Integer)]
            key: i32,
        }
        let taken: Vec<Taken> =
            sql_query("SELECT k AS key FROM unnest($2::int4[]) AS k WHERE pg_try_advisory_lock($1, k)")
                .bind::<Integer, _>(schema)
                .bind::<Array<Integer>, _>(&keys)
                .load(&mut conn)
                .map_err(StoreError::query(action))?;
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let taken: Vec<i32> = taken.into_iter().map(|t| t.key).collect();
        sql_query("SELECT pg_advisory_unlock($1, k) FROM unnest($2::int4[]) AS k")
            .bind::<Integer, _>(schema)
            .bind::<Array<Integer>, _>(&taken)
            .execute(&mut conn)
            .map_err(StoreError::query(action))?;
        Ok(taken.iter().filter_map(|key| by_key.get(key).copied()).collect())
    }

    fn reap_process(
        &self,
        process: ProcessId,
        cause: &DeathCause,
        policy: DeathPolicy,
        now: NaiveDateTime,
    ) -> StoreResult<ReapOutcome> {
        let reaped = self.run("reaping a dead process", |conn| {
            let returned = (processes::name, processes::hostname, processes::pid, processes::last_heartbeat_at);
            // The row delete decides who reaps: a second reaper waits for the first to commit
            // and then deletes nothing; a heartbeat committed first makes the cutoff fail.
            let dead: Option<DeadProcess> = match cause {
                DeathCause::HeartbeatOlderThan { cutoff, .. } => diesel::delete(
                    processes::table.filter(processes::id.eq(process)).filter(processes::last_heartbeat_at.lt(*cutoff)),
                )
                .returning(returned)
                .get_result(conn)
                .optional()?,
                DeathCause::Proven(_) => diesel::delete(processes::table.filter(processes::id.eq(process)))
                    .returning(returned)
                    .get_result(conn)
                    .optional()?,
            };
            let Some(dead) = dead else {
                return Ok(ReapOutcome::default());
            };
            // The row lock is ours now: a verdict that waited too long for it is void.
            if cause.expired() {
                return Err(diesel::result::Error::RollbackTransaction);
            }
            let ids = take_claims_of(conn, process)?;
            let error = failure_json(&death_record(process, &dead, cause));
            let (retried, failed) = shared::dispose_claims(conn, &ids, &error, policy, now)?;
            Ok(ReapOutcome { reaped: true, retried, failed })
        });
        let outcome = match reaped {
            Err(StoreError::Query { source: diesel::result::Error::RollbackTransaction, .. }) => ReapOutcome::default(),
            other => other?,
        };
        if outcome.reaped {
            self.drop_session(process);
        }
        Ok(outcome)
    }

    fn release_orphans(&self, now: NaiveDateTime) -> StoreResult<usize> {
        let action = "releasing orphaned claims";
        let mut conn = self.pool.get().map_err(StoreError::connection(action))?;
        sql_query(RELEASE_ORPHANS_SQL).bind::<Timestamp, _>(now).execute(&mut conn).map_err(StoreError::query(action))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_fnv1a() {
        assert_eq!(stable_hash(""), 0x811c_9dc5);
        assert_eq!(stable_hash("a"), 0xe40c_292c);
        assert_ne!(stable_hash("solidq_t_1"), stable_hash("solidq_t_2"));
    }
}
