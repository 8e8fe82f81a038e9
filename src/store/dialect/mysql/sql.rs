//! The statements of the MySQL dialect whose text is fixed, the rows they return, and the
//! helpers that build `IN (…)` lists. No `RETURNING` anywhere: MariaDB's fails through diesel
//! ("No metadata exists"), and MySQL has none.

use diesel::sql_types::{BigInt, Datetime, Nullable};
use diesel::QueryableByName;

/// A row's id with its job's (an execution row read before it is deleted by id).
#[derive(QueryableByName)]
pub(super) struct IdJobRow {
    #[diesel(sql_type = BigInt)]
    pub(super) id: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) job_id: i64,
}

/// A ready row a claim picked, with when it became ready.
#[derive(QueryableByName)]
pub(super) struct ReadyRow {
    #[diesel(sql_type = BigInt)]
    pub(super) id: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) job_id: i64,
    #[diesel(sql_type = Datetime)]
    pub(super) created_at: chrono::NaiveDateTime,
}

/// One integer (a count, an id, a server variable); `NULL` where the function failed.
#[derive(QueryableByName)]
pub(super) struct Number {
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(super) n: Option<i64>,
}

/// How the server hands out auto-increment ids (see `enqueue_on`).
#[derive(QueryableByName)]
pub(super) struct AutoincSettings {
    #[diesel(sql_type = BigInt)]
    pub(super) lock_mode: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) increment: i64,
}

/// The server's auto-increment lock mode and step.
pub(super) const AUTOINC_SQL: &str = "SELECT CAST(@@innodb_autoinc_lock_mode AS SIGNED) AS lock_mode, \
     CAST(@@auto_increment_increment AS SIGNED) AS increment";

/// The first id the last INSERT of this session generated.
pub(super) const LAST_INSERT_ID_SQL: &str = "SELECT CAST(LAST_INSERT_ID() AS SIGNED) AS n";

/// The process row, share-locked: a reap's DELETE waits until the claim commits (PostgreSQL's
/// `FOR KEY SHARE`). `LOCK IN SHARE MODE`, which both servers know (`FOR SHARE` is MySQL 8's).
pub(super) const LOCK_PROCESS_SQL: &str = "SELECT id AS n FROM solidq_processes WHERE id = ? LOCK IN SHARE MODE";

/// Ready rows for a claim: `{filter}` is the queue condition, `{kinds}` and `{paused}` are
/// placeholder lists; then the limit. SKIP LOCKED: rows another claim is taking are passed
/// over, never waited for.
pub(super) const CLAIM_READY_SQL: &str = "SELECT id, job_id, created_at FROM solidq_ready_executions \
     WHERE {filter} AND class_name IN ({kinds}) AND {paused} \
     ORDER BY priority, job_id LIMIT ? FOR UPDATE SKIP LOCKED";

/// Takes the concurrency key's row lock until commit, creating the row on first use.
pub(super) const LOCK_KEY_SQL: &str = "INSERT INTO solidq_concurrency_locks (concurrency_key) VALUES (?) \
     ON DUPLICATE KEY UPDATE concurrency_key = concurrency_key";

/// Claims whose process row is gone (a plain read: candidates only).
pub(super) const ORPHAN_CANDIDATES_SQL: &str = "SELECT c.id, c.job_id FROM solidq_claimed_executions c \
     WHERE NOT EXISTS (SELECT 1 FROM solidq_processes p WHERE p.id = c.process_id)";

/// Due scheduled rows, earliest first; SKIP LOCKED so that dispatchers never wait for each
/// other. Never `DELETE … WHERE id IN (SELECT … LIMIT)`: MySQL refuses it (error 1235).
pub(super) const TAKE_DUE_SQL: &str = "SELECT id, job_id FROM solidq_scheduled_executions WHERE scheduled_at <= ? \
     ORDER BY scheduled_at, priority, job_id LIMIT ? FOR UPDATE SKIP LOCKED";

/// `n` comma-separated placeholders (`n` ≥ 1).
pub(super) fn placeholders(n: usize) -> String {
    let mut text = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            text.push(',');
        }
        text.push('?');
    }
    text
}

/// What a reap reads about a process before deleting it.
#[derive(QueryableByName)]
pub(super) struct DeadRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(super) name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(super) hostname: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub(super) pid: i32,
    #[diesel(sql_type = Datetime)]
    pub(super) last_heartbeat_at: chrono::NaiveDateTime,
}

/// The process row a reap deletes; the caller appends the cutoff and `FOR UPDATE`.
pub(super) const DEAD_PROCESS_SQL: &str =
    "SELECT name, hostname, pid, last_heartbeat_at FROM solidq_processes WHERE id = ?";
