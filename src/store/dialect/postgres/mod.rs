//! PostgreSQL: claims and dispatch are single statements with `FOR UPDATE SKIP LOCKED`, so
//! workers never wait for each other; rows that decide a race are deleted `RETURNING`; ids of
//! new jobs come back with `RETURNING`. Each registered process holds a session-level advisory
//! lock on a dedicated connection ([`sessions`]); other processes' enqueues wake this one's
//! workers through LISTEN ([`listen`]). The fixed statements are in [`sql`].

use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;

use crate::store::sql_types::at;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::prepared::{Bind, Prepared};
use super::{expect_variant, DeadProcess, Dialect, HotPath, SessionLiveness};
use crate::model::{ClaimToken, ClaimedJob, JobId, NewJob, ProcessId, QueuePattern};
use crate::store::connection::DbConnection;
use crate::store::params::{like_prefix, Claim, CompletedClaims};
use crate::store::schema::{solidq_claimed_executions as claimed, solidq_processes as processes};

mod listen;
mod sessions;
mod sql;

use sessions::{stable_hash, Sessions};
use sql::*;

/// The PostgreSQL migrations, embedded at build time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The PostgreSQL dialect, with the dedicated session connections of the processes this store
/// registered.
pub struct Postgres {
    /// The URL as configured plus `connect_timeout`, for the listener.
    url: String,
    sessions: Sessions,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
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
        Postgres { sessions: Sessions::new(url.clone()), url }
    }

    /// The dialect's SQL only, on a connection the caller opened: no sessions.
    pub fn sql_only() -> Self {
        Postgres::new(String::new())
    }
}

/// The claim ids and the job ids of `tokens`, as two array binds in the same order.
fn token_binds(tokens: &[ClaimToken]) -> [Bind<'static>; 2] {
    [
        Bind::BigInts(tokens.iter().map(|t| t.claim_id).collect()),
        Bind::BigInts(tokens.iter().map(|t| t.job_id).collect()),
    ]
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
            _ => return Err("the PostgreSQL dialect was given another backend's connection".into()),
        };
        // All pending migrations in one transaction (each in a savepoint), serialized per
        // schema by a transaction-level advisory lock so concurrent starts apply them once.
        conn.transaction::<_, Box<dyn std::error::Error + Send + Sync>, _>(|conn| {
            let schema = self.sessions.schema_key(conn)?;
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
            rows.sort_unstable_by_key(|row| (row.priority, row.token.job_id));
            out.extend(rows.into_iter().map(|row| ClaimedJob {
                token: row.token.into(),
                kind: row.class_name,
                arguments: row.arguments,
                queue: row.queue_name,
                priority: row.priority,
                attempts: row.attempts,
                max_attempts: row.max_attempts,
                ready_at: row.ready_at,
                rate_limit_key: row.rate_limit_key,
                rate_limit_deadline: None,
                rate_limit_start: None,
            }));
        }
        Ok(out)
    }

    fn take_claims(&self, conn: &mut DbConnection, tokens: &[ClaimToken]) -> QueryResult<Vec<ClaimToken>> {
        let conn = expect_variant!(conn, Postgres);
        // Pairs, so that a claim id never matches another job's token.
        let rows: Vec<TokenRow> = Prepared::new(
            "DELETE FROM solidq_claimed_executions c
             WHERE c.id = ANY($1) AND (c.id, c.job_id) IN (SELECT * FROM unnest($1::int8[], $2::int8[]))
             RETURNING c.id AS claim_id, c.job_id",
            token_binds(tokens).into(),
        )
        .load(conn)?;
        Ok(rows.into_iter().map(ClaimToken::from).collect())
    }

    fn complete_claims(
        &self,
        conn: &mut DbConnection,
        tokens: &[ClaimToken],
        now: NaiveDateTime,
    ) -> QueryResult<Option<CompletedClaims>> {
        let [claim_ids, job_ids] = token_binds(tokens);
        let binds = vec![claim_ids, job_ids, Bind::Timestamp(now)];
        let rows: Vec<FinishedRow> = Prepared::new(COMPLETE_SQL, binds).load(expect_variant!(conn, Postgres))?;
        let keys = rows.iter().filter_map(|row| row.concurrency_key.clone()).collect();
        let composing = rows.iter().filter(|row| row.has_dependants).map(|row| row.token.job_id).collect();
        let taken = rows.into_iter().map(|row| ClaimToken::from(row.token)).collect();
        Ok(Some(CompletedClaims { taken, keys, composing }))
    }

    fn notify_ready(&self, conn: &mut DbConnection) -> QueryResult<()> {
        // The channel of the trigger on the ready table (migration 2026-11-28-000001).
        sql_query("SELECT pg_notify('solidq_ready_' || left(md5(current_schema()), 16), '')")
            .execute(expect_variant!(conn, Postgres))?;
        Ok(())
    }

    fn lock_waiting(&self, conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<Vec<JobId>> {
        super::waiting_for_update!(expect_variant!(conn, Postgres), ids)
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

    fn limit_statements(&self, conn: &mut DbConnection, timeout: std::time::Duration) -> QueryResult<()> {
        let conn = expect_variant!(conn, Postgres);
        let millis = timeout.as_millis().max(1);
        diesel::connection::SimpleConnection::batch_execute(conn, &format!("SET LOCAL statement_timeout = {millis}"))
    }

    fn estimate_rows(&self, conn: &mut DbConnection, what: super::Estimate) -> QueryResult<Option<u64>> {
        #[derive(QueryableByName)]
        struct PlanLine {
            #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
            line: String,
        }
        let super::Estimate::Ended(end) = what;
        // The planner's row estimate for the count's own condition, from the statistics
        // (ANALYZE, autovacuum): no row is read.
        let condition = match end {
            None => "finished_at IS NOT NULL AND end_state IS NULL".to_string(),
            Some(end) => format!("finished_at IS NOT NULL AND end_state = '{}'", end.as_str()),
        };
        let conn = expect_variant!(conn, Postgres);
        let plan: Vec<PlanLine> =
            sql_query(format!("EXPLAIN SELECT id FROM solidq_jobs WHERE {condition}")).load(conn)?;
        Ok(plan.first().and_then(|first| plan_rows(&first.line)))
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
        Some(Box::new(move |wake, stop| listen::listen_for_ready(&url, wake, stop)))
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
        // A second watchdog waits for the first to commit and then deletes nothing; a heartbeat
        // committed first makes the cutoff fail.
        match cutoff {
            Some(cutoff) => diesel::delete(
                processes::table.filter(processes::id.eq(process)).filter(processes::last_heartbeat_at.lt(at(cutoff))),
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

    fn hold_term(&self, conn: &mut DbConnection, term: i64) -> QueryResult<bool> {
        use crate::store::schema::solidq_leaders as leaders;
        let current: Option<i64> = leaders::table
            .filter(leaders::name.eq(crate::store::leadership::MAINTENANCE))
            .select(leaders::term)
            .for_share()
            .first(expect_variant!(conn, Postgres))
            .optional()?;
        Ok(current == Some(term))
    }

    fn sessions(&self) -> Option<&dyn SessionLiveness> {
        Some(&self.sessions)
    }
}

/// The `rows=` estimate of an EXPLAIN line, as in `Seq Scan on t  (cost=0.00..1.10 rows=10 width=8)`.
fn plan_rows(line: &str) -> Option<u64> {
    let start = line.find("rows=")? + "rows=".len();
    let digits: String = line[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
