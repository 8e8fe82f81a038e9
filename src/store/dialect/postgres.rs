//! PostgreSQL: claims and dispatch are single statements with `FOR UPDATE SKIP LOCKED`, so
//! workers never wait for each other; rows that decide a race are deleted `RETURNING`; ids of
//! new jobs come back with `RETURNING`. Each registered process holds a session-level advisory
//! lock on a dedicated connection for its whole life: when the process dies, PostgreSQL ends
//! its session and frees the lock, which [`SessionLiveness::gone`] sees long before a
//! heartbeat expires.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::prepared::{Bind, Prepared};
use super::{expect_variant, DeadProcess, Dialect, HotPath, SessionLiveness};
use crate::model::{ClaimToken, ClaimedJob, JobId, NewJob, ProcessId, QueuePattern};
use crate::store::connection::{init_tls, DbConnection};
use crate::store::error::{StoreError, StoreResult};
use crate::store::params::{like_prefix, Claim};
use crate::store::schema::{solidq_claimed_executions as claimed, solidq_processes as processes};

/// The PostgreSQL migrations, embedded at build time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long after losing one of its own sessions a store reports no session as gone: a
/// session lost by this process too means the server probably restarted and every live
/// process is re-taking its lock.
pub const SESSION_RESTART_GRACE: Duration = Duration::from_secs(5);

/// The dedicated connection holding one process's advisory lock.
struct Session {
    /// `None` after a failed reconnect or once the process is gone.
    conn: Option<PgConnection>,
    /// Whether `conn` holds the lock.
    locked: bool,
    /// Set when the process deregistered or was reaped: never reconnect.
    closed: bool,
}

/// The PostgreSQL dialect, with the dedicated session connections of the processes this store
/// registered.
pub struct Postgres {
    /// The URL as configured plus `connect_timeout`, for the dedicated connections.
    url: String,
    sessions: Mutex<HashMap<ProcessId, Arc<Mutex<Session>>>>,
    /// First advisory-lock key: a stable hash of `current_schema()`.
    schema_key: OnceLock<i32>,
    /// When one of this store's own sessions was last found broken.
    session_lost_at: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
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
struct JobIdRow {
    #[diesel(sql_type = BigInt)]
    job_id: i64,
}

#[derive(QueryableByName)]
struct TokenRow {
    #[diesel(sql_type = BigInt)]
    claim_id: i64,
    #[diesel(sql_type = BigInt)]
    job_id: i64,
}

#[derive(QueryableByName)]
struct FinishedRow {
    #[diesel(sql_type = BigInt)]
    claim_id: i64,
    #[diesel(sql_type = BigInt)]
    job_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    concurrency_key: Option<String>,
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

/// Takes up to `$3` ready rows of the kinds `$4` (filtered by `{filter}`, which may use `$5`),
/// claims them for process `$1` at `$2`, in one statement, without writing the job rows (the
/// attempt is counted when it ends, see `lifecycle`); nothing if
/// the process row is gone. KEY SHARE on the process row: a concurrent reap (DELETE) waits
/// for this claim to commit and then sees its claims, while heartbeats (UPDATE of non-key
/// columns) do not wait.
const CLAIM_SQL: &str = "
WITH alive AS (
    SELECT id FROM solidq_processes WHERE id = $1 FOR KEY SHARE
), picked AS (
    SELECT id, job_id FROM solidq_ready_executions
    WHERE EXISTS (SELECT 1 FROM alive) AND {filter} AND class_name = ANY($4)
      AND NOT EXISTS (SELECT 1 FROM solidq_pauses p WHERE p.queue_name = solidq_ready_executions.queue_name)
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
SELECT j.id AS job_id, claims.id AS claim_id, j.class_name, j.arguments, j.queue_name,
       j.priority, j.attempts + 1 AS attempts, j.max_attempts
FROM claims JOIN solidq_jobs j ON j.id = claims.job_id";

/// Deletes the claims of the pairs (`$1` claim ids, `$2` job ids) that still exist, marks their
/// jobs finished at `$3` with the attempt counted and the unique key given up, and returns the
/// claims taken with the concurrency keys their jobs held: one statement for a batch of
/// finishes, one write per job row.
///
/// The UPDATE returns the claim ids itself (RETURNING may name the tables of its FROM): a join
/// of the two CTEs would be planned as a nested loop over both (the planner guesses one row
/// for each), quadratic in the batch. `c.id = ANY($1)` lets the plan find the claims by primary
/// key whatever the table's statistics say (a plan made while the table looked empty scanned
/// it whole, dead rows included).
const COMPLETE_SQL: &str = "
WITH taken AS (
    DELETE FROM solidq_claimed_executions c
    WHERE c.id = ANY($1) AND (c.id, c.job_id) IN (SELECT * FROM unnest($1::int8[], $2::int8[]))
    RETURNING c.id AS claim_id, c.job_id
)
UPDATE solidq_jobs j SET finished_at = $3, updated_at = $3, attempts = j.attempts + 1, unique_key = NULL
FROM taken WHERE j.id = taken.job_id
RETURNING taken.claim_id, taken.job_id, j.concurrency_key";

/// Deletes up to `$2` scheduled rows due at `$1`, earliest first, skipping rows another
/// dispatcher holds.
const TAKE_DUE_SQL: &str = "
WITH due AS (
    SELECT id FROM solidq_scheduled_executions
    WHERE scheduled_at <= $1
    ORDER BY scheduled_at, priority, job_id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM solidq_scheduled_executions s USING due WHERE s.id = due.id
RETURNING s.job_id";

/// Deletes claims whose process row is gone, skipping claims another sweep holds.
const TAKE_ORPHANS_SQL: &str = "
WITH orphans AS (
    SELECT c.id FROM solidq_claimed_executions c
    WHERE NOT EXISTS (SELECT 1 FROM solidq_processes p WHERE p.id = c.process_id)
    FOR UPDATE OF c SKIP LOCKED
)
DELETE FROM solidq_claimed_executions c USING orphans WHERE c.id = orphans.id
RETURNING c.job_id";

/// Ready and scheduled executions for the jobs `$1` (with `$2` as now).
const ENQUEUE_SQL: &str = "
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::int4[], $6::timestamp[])
        WITH ORDINALITY AS t(queue_name, class_name, arguments, priority, max_attempts, scheduled_at, n)
), new_jobs AS (
    INSERT INTO solidq_jobs (queue_name, class_name, arguments, priority, attempts, max_attempts, scheduled_at,
                             created_at, updated_at)
    SELECT queue_name, class_name, arguments, priority, 0, max_attempts, scheduled_at, $7, $7
    FROM input ORDER BY n
    RETURNING id, queue_name, priority, scheduled_at, class_name
), ready AS (
    INSERT INTO solidq_ready_executions (job_id, queue_name, priority, created_at, class_name)
    SELECT id, queue_name, priority, $7, class_name FROM new_jobs WHERE scheduled_at IS NULL OR scheduled_at <= $7
), later AS (
    INSERT INTO solidq_scheduled_executions (job_id, queue_name, priority, scheduled_at, created_at)
    SELECT id, queue_name, priority, scheduled_at, $7 FROM new_jobs WHERE scheduled_at > $7
)
SELECT id AS job_id FROM new_jobs";

/// Jobs per enqueue statement: arrays are bound as one parameter each, so this bounds only
/// the size of one statement.
const ENQUEUE_CHUNK: usize = 10_000;

/// How often the listener reads what the server sent: diesel exposes no socket to wait on, and
/// reading a quiet connection is one non-blocking `recv`, no statement.
const LISTEN_POLL: Duration = Duration::from_millis(1);
/// Longest wait between attempts to reconnect the listener.
const LISTEN_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A connection listening on the channel the `solidq_notify_ready` trigger of the URL's schema
/// notifies.
fn listening(url: &str) -> Result<PgConnection, String> {
    #[derive(QueryableByName)]
    struct Channel {
        #[diesel(sql_type = Text)]
        channel: String,
    }
    let mut conn = PgConnection::establish(url).map_err(|err| err.to_string())?;
    let channel: Channel = sql_query("SELECT 'solidq_ready_' || left(md5(current_schema()), 16) AS channel")
        .get_result(&mut conn)
        .map_err(|err| err.to_string())?;
    let listen = format!("LISTEN \"{}\"", channel.channel);
    diesel::connection::SimpleConnection::batch_execute(&mut conn, &listen).map_err(|err| err.to_string())?;
    Ok(conn)
}

/// Calls `wake` (at most once per poll) when the server tells of jobs made ready, until `stop`
/// is set; reconnects with backoff, and wakes after each reconnect (jobs may have become ready
/// meanwhile). Workers still poll, so a listener that cannot connect costs only latency.
fn listen_for_ready(url: &str, wake: &dyn Fn(), stop: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let mut conn: Option<PgConnection> = None;
    let mut backoff = Duration::from_millis(100);
    let mut retry_at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match conn.as_mut() {
            None if Instant::now() >= retry_at => match listening(url) {
                Ok(listener) => {
                    conn = Some(listener);
                    backoff = Duration::from_millis(100);
                    wake();
                }
                Err(_) => {
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(LISTEN_MAX_BACKOFF);
                }
            },
            None => {}
            Some(listener) => {
                let (mut notified, mut broken) = (false, false);
                for notification in listener.notifications_iter() {
                    match notification {
                        Ok(_) => notified = true,
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
                if broken {
                    conn = None;
                    retry_at = Instant::now() + backoff;
                }
                if notified {
                    wake();
                }
            }
        }
        std::thread::sleep(LISTEN_POLL);
    }
}

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

/// Inserts the jobs and their executions, one statement per chunk of arrays (no lookup of
/// the new rows, so it is as fast into a never-analyzed table as into a big one); the caller
/// holds a transaction.
pub(crate) fn enqueue_on(conn: &mut PgConnection, new_jobs: &[NewJob], now: NaiveDateTime) -> QueryResult<Vec<JobId>> {
    let mut ids = Vec::with_capacity(new_jobs.len());
    for chunk in new_jobs.chunks(ENQUEUE_CHUNK) {
        let column = |get: fn(&NewJob) -> &str| Bind::Texts(chunk.iter().map(get).collect());
        let rows: Vec<JobIdRow> = Prepared::new(
            ENQUEUE_SQL,
            vec![
                column(|job| &job.queue),
                column(|job| &job.kind),
                column(|job| &job.arguments),
                Bind::Integers(chunk.iter().map(|job| job.priority).collect()),
                Bind::Integers(chunk.iter().map(|job| job.max_attempts).collect()),
                Bind::NullableTimestamps(chunk.iter().map(|job| job.scheduled_at).collect()),
                Bind::Timestamp(now),
            ],
        )
        .load(conn)?;
        // Ids are drawn from the sequence row by row in input order, so ascending ids are
        // input order whatever order RETURNING uses.
        let mut chunk_ids: Vec<JobId> = rows.into_iter().map(|row| row.job_id).collect();
        chunk_ids.sort_unstable();
        ids.extend(chunk_ids);
    }
    Ok(ids)
}

impl Postgres {
    /// A dialect whose dedicated session connections go to `url` (with `connect_timeout`).
    pub fn new(url: String) -> Self {
        Postgres {
            url,
            sessions: Mutex::new(HashMap::new()),
            schema_key: OnceLock::new(),
            session_lost_at: Mutex::new(None),
        }
    }

    /// The dialect's SQL only, on a connection the caller opened: no sessions.
    pub fn sql_only() -> Self {
        Postgres::new(String::new())
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
}

impl Dialect for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn begin_write(&self, conn: &mut DbConnection) -> QueryResult<()> {
        AnsiTransactionManager::begin_transaction(expect_variant!(conn, Postgres))
    }

    fn begin_read(&self, conn: &mut DbConnection) -> QueryResult<()> {
        AnsiTransactionManager::begin_transaction_sql(
            expect_variant!(conn, Postgres),
            "BEGIN TRANSACTION READ ONLY ISOLATION LEVEL REPEATABLE READ",
        )
    }

    fn retryable(&self, err: &diesel::result::Error) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        // Serialization failures (SQLSTATE 40001) have their own kind; deadlocks (40P01) come
        // as unknown errors with PostgreSQL's message.
        match err {
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
            // Two enqueues of one unique key raced: run again, and the second finds the first.
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                info.constraint_name() == Some("index_solidq_jobs_on_unique_key")
            }
            Error::DatabaseError(_, info) => info.message().starts_with("deadlock detected"),
            _ => false,
        }
    }

    fn migrate(&self, conn: &mut DbConnection) -> Result<usize, String> {
        let conn = match conn {
            DbConnection::Postgres(conn) => conn,
            DbConnection::Sqlite(_) => return Err("the PostgreSQL dialect was given a SQLite connection".into()),
        };
        // All pending migrations in one transaction (each in a savepoint), serialized per
        // schema by a transaction-level advisory lock so concurrent starts apply them once.
        conn.transaction::<_, Box<dyn std::error::Error + Send + Sync>, _>(|conn| {
            let schema = self.schema_key(conn)?;
            let key = (i64::from(stable_hash("solidq migrations")) << 32) | i64::from(schema as u32);
            sql_query("SELECT pg_advisory_xact_lock($1)").bind::<BigInt, _>(key).execute(conn)?;
            Ok(conn.run_pending_migrations(MIGRATIONS)?.len())
        })
        .map_err(|err| err.to_string())
    }

    fn enqueue(&self, conn: &mut DbConnection, jobs: &[NewJob], now: NaiveDateTime) -> QueryResult<Vec<JobId>> {
        enqueue_on(expect_variant!(conn, Postgres), jobs, now)
    }

    fn claim(&self, conn: &mut DbConnection, claim: &Claim<'_>) -> QueryResult<Vec<ClaimedJob>> {
        let Claim { process, queues, kinds, limit, now } = *claim;
        let conn = expect_variant!(conn, Postgres);
        let mut out: Vec<ClaimedJob> = Vec::new();
        for pattern in queues {
            let remaining = limit.saturating_sub(out.len());
            if remaining == 0 {
                break;
            }
            let (filter, bind) = match pattern {
                QueuePattern::All => ("TRUE", None),
                QueuePattern::Exact(name) => ("queue_name = $5", Some(name.clone())),
                QueuePattern::Prefix(prefix) => ("queue_name LIKE $5 ESCAPE '\\'", Some(like_prefix(prefix))),
            };
            let mut binds = vec![
                Bind::BigInt(process),
                Bind::Timestamp(now),
                Bind::BigInt(i64::try_from(remaining).unwrap_or(i64::MAX)),
                Bind::Texts(kinds.iter().map(String::as_str).collect()),
            ];
            binds.extend(bind.map(Bind::Text));
            let mut rows: Vec<ClaimedRow> = Prepared::new(CLAIM_SQL.replace("{filter}", filter), binds).load(conn)?;
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
    }

    fn take_claims(&self, conn: &mut DbConnection, tokens: &[ClaimToken]) -> QueryResult<Vec<ClaimToken>> {
        let conn = expect_variant!(conn, Postgres);
        let claim_ids: Vec<i64> = tokens.iter().map(|t| t.claim_id).collect();
        let job_ids: Vec<i64> = tokens.iter().map(|t| t.job_id).collect();
        // Pairs, so that a claim id never matches another job's token.
        let rows: Vec<TokenRow> = Prepared::new(
            "DELETE FROM solidq_claimed_executions c
             WHERE c.id = ANY($1) AND (c.id, c.job_id) IN (SELECT * FROM unnest($1::int8[], $2::int8[]))
             RETURNING c.id AS claim_id, c.job_id",
            vec![Bind::BigInts(claim_ids), Bind::BigInts(job_ids)],
        )
        .load(conn)?;
        Ok(rows.into_iter().map(|row| ClaimToken { job_id: row.job_id, claim_id: row.claim_id }).collect())
    }

    fn complete_claims(
        &self,
        conn: &mut DbConnection,
        tokens: &[ClaimToken],
        now: NaiveDateTime,
    ) -> QueryResult<Option<(Vec<ClaimToken>, BTreeSet<String>)>> {
        let claim_ids: Vec<i64> = tokens.iter().map(|t| t.claim_id).collect();
        let job_ids: Vec<i64> = tokens.iter().map(|t| t.job_id).collect();
        let binds = vec![Bind::BigInts(claim_ids), Bind::BigInts(job_ids), Bind::Timestamp(now)];
        let rows: Vec<FinishedRow> = Prepared::new(COMPLETE_SQL, binds).load(expect_variant!(conn, Postgres))?;
        let keys = rows.iter().filter_map(|row| row.concurrency_key.clone()).collect();
        let taken = rows.into_iter().map(|row| ClaimToken { job_id: row.job_id, claim_id: row.claim_id }).collect();
        Ok(Some((taken, keys)))
    }

    fn notify_ready(&self, conn: &mut DbConnection) -> QueryResult<()> {
        // The channel of the trigger on the ready table (migration 2026-11-28-000001).
        sql_query("SELECT pg_notify('solidq_ready_' || left(md5(current_schema()), 16), '')")
            .execute(expect_variant!(conn, Postgres))?;
        Ok(())
    }

    fn lock_key(&self, conn: &mut DbConnection, key: &str) -> QueryResult<()> {
        // One 64-bit key space, apart from the (schema, process) pairs of session liveness.
        sql_query("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || $1, 0))")
            .bind::<Text, _>(key)
            .execute(expect_variant!(conn, Postgres))?;
        Ok(())
    }

    fn one_statement(&self, work: HotPath<'_>) -> bool {
        match work {
            HotPath::Enqueue(jobs) => jobs <= ENQUEUE_CHUNK,
            HotPath::Claim(claim) => claim.queues.len() == 1,
            HotPath::Complete => true,
        }
    }

    fn tidy(&self, conn: &mut DbConnection) -> QueryResult<bool> {
        // SKIP_LOCKED: a vacuum another process runs now does the work for both.
        let conn = expect_variant!(conn, Postgres);
        diesel::connection::SimpleConnection::batch_execute(
            conn,
            "VACUUM (SKIP_LOCKED) solidq_ready_executions, solidq_claimed_executions",
        )?;
        Ok(true)
    }

    /// LISTEN on the schema's channel. NOTIFY tells of ready jobs only, not of every commit:
    /// no change counts, so maintenance reads on every pass.
    fn ready_listener(&self, _context: super::ListenerContext) -> Option<super::ReadyListener> {
        let url = self.url.clone();
        Some(Box::new(move |wake, stop| listen_for_ready(&url, wake, stop)))
    }

    fn take_claims_of(&self, conn: &mut DbConnection, process: ProcessId) -> QueryResult<Vec<JobId>> {
        let conn = expect_variant!(conn, Postgres);
        diesel::delete(claimed::table.filter(claimed::process_id.eq(process)))
            .returning(claimed::job_id)
            .get_results(conn)
    }

    fn take_orphan_claims(&self, conn: &mut DbConnection) -> QueryResult<Vec<JobId>> {
        let rows: Vec<JobIdRow> = sql_query(TAKE_ORPHANS_SQL).load(expect_variant!(conn, Postgres))?;
        Ok(rows.into_iter().map(|row| row.job_id).collect())
    }

    fn take_due(&self, conn: &mut DbConnection, now: NaiveDateTime, batch: usize) -> QueryResult<Vec<JobId>> {
        let binds = vec![Bind::Timestamp(now), Bind::BigInt(i64::try_from(batch).unwrap_or(i64::MAX))];
        let rows: Vec<JobIdRow> = Prepared::new(TAKE_DUE_SQL, binds).load(expect_variant!(conn, Postgres))?;
        Ok(rows.into_iter().map(|row| row.job_id).collect())
    }

    fn delete_process(
        &self,
        conn: &mut DbConnection,
        process: ProcessId,
        cutoff: Option<NaiveDateTime>,
    ) -> QueryResult<Option<DeadProcess>> {
        let conn = expect_variant!(conn, Postgres);
        let returned = (processes::name, processes::hostname, processes::pid, processes::last_heartbeat_at);
        // A second reaper waits for the first to commit and then deletes nothing; a heartbeat
        // committed first makes the cutoff fail.
        match cutoff {
            Some(cutoff) => diesel::delete(
                processes::table.filter(processes::id.eq(process)).filter(processes::last_heartbeat_at.lt(cutoff)),
            )
            .returning(returned)
            .get_result(conn)
            .optional(),
            None => diesel::delete(processes::table.filter(processes::id.eq(process)))
                .returning(returned)
                .get_result(conn)
                .optional(),
        }
    }

    fn sessions(&self) -> Option<&dyn SessionLiveness> {
        Some(self)
    }
}

impl SessionLiveness for Postgres {
    fn register(&self, insert: &mut dyn FnMut(&mut DbConnection) -> QueryResult<ProcessId>) -> StoreResult<ProcessId> {
        let action = "registering the process";
        init_tls();
        let conn = PgConnection::establish(&self.url)
            .map_err(|err| StoreError::Connection { action, message: err.to_string() })?;
        let mut conn = DbConnection::Postgres(conn);
        // Row and lock in one transaction on the dedicated connection: nobody can see the row
        // while its lock is free.
        let id = conn
            .transaction(|conn| {
                let id = insert(conn)?;
                let conn = expect_variant!(conn, Postgres);
                let key = self.schema_key(conn)?;
                sql_query("SELECT pg_advisory_lock($1, $2)")
                    .bind::<Integer, _>(key)
                    .bind::<Integer, _>(process_key(id))
                    .execute(conn)?;
                Ok(id)
            })
            .map_err(StoreError::query(action))?;
        let DbConnection::Postgres(conn) = conn else { unreachable!("opened as a PostgreSQL connection") };
        let session = Session { conn: Some(conn), locked: true, closed: false };
        lock_or_recover(&self.sessions).insert(id, Arc::new(Mutex::new(session)));
        Ok(id)
    }

    fn keep(&self, process: ProcessId) -> StoreResult<bool> {
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
        *lock_or_recover(&self.session_lost_at) = Some(Instant::now());
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

    fn gone(&self, conn: &mut DbConnection, candidates: &[ProcessId]) -> QueryResult<Vec<ProcessId>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let recently_lost =
            lock_or_recover(&self.session_lost_at).is_some_and(|at| at.elapsed() < SESSION_RESTART_GRACE);
        if recently_lost {
            return Ok(Vec::new());
        }
        let conn = expect_variant!(conn, Postgres);
        let schema = self.schema_key(conn)?;
        let by_key: HashMap<i32, ProcessId> = candidates.iter().map(|&p| (process_key(p), p)).collect();
        // This store's own processes too, in the same round trip: if one of their locks is
        // free, the sessions were cut here as well (a network cut, a server restart) and the
        // others' free locks prove nothing yet.
        let own: Vec<i32> = lock_or_recover(&self.sessions).keys().map(|&p| process_key(p)).collect();
        let keys: Vec<i32> = by_key.keys().chain(&own).copied().collect();
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
                .load(conn)?;
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let taken: Vec<i32> = taken.into_iter().map(|t| t.key).collect();
        sql_query("SELECT pg_advisory_unlock($1, k) FROM unnest($2::int4[]) AS k")
            .bind::<Integer, _>(schema)
            .bind::<Array<Integer>, _>(&taken)
            .execute(conn)?;
        if taken.iter().any(|key| own.contains(key)) {
            *lock_or_recover(&self.session_lost_at) = Some(Instant::now());
            return Ok(Vec::new());
        }
        Ok(taken.iter().filter_map(|key| by_key.get(key).copied()).collect())
    }

    fn session_id(&self, process: ProcessId) -> Option<i32> {
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

    fn release(&self, process: ProcessId) {
        let session = lock_or_recover(&self.sessions).remove(&process);
        if let Some(session) = session {
            let mut session = lock_or_recover(&session);
            session.closed = true;
            session.locked = false;
            session.conn = None;
        }
    }
}
