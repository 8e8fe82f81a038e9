//! The statements of the PostgreSQL dialect whose text is fixed, and the rows they return.

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;

use crate::model::ClaimToken;
use crate::store::schema::solidq_jobs;

/// A claim token returned by a statement (columns `claim_id` and `job_id`).
#[derive(QueryableByName)]
pub(super) struct TokenRow {
    #[diesel(sql_type = BigInt)]
    pub(super) claim_id: i64,
    #[diesel(sql_type = BigInt)]
    pub(super) job_id: i64,
}

impl From<TokenRow> for ClaimToken {
    fn from(row: TokenRow) -> ClaimToken {
        ClaimToken { job_id: row.job_id, claim_id: row.claim_id }
    }
}

/// A job [`CLAIM_SQL`] claimed; the columns after the token are typed as the job table's.
#[derive(QueryableByName)]
#[diesel(table_name = solidq_jobs)]
pub(super) struct ClaimedRow {
    #[diesel(embed)]
    pub(super) token: TokenRow,
    pub(super) class_name: String,
    pub(super) arguments: String,
    pub(super) queue_name: String,
    pub(super) priority: i32,
    pub(super) attempts: i32,
    pub(super) max_attempts: i32,
    /// When the ready row was written.
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    pub(super) ready_at: chrono::NaiveDateTime,
    pub(super) rate_limit_key: Option<String>,
}

/// A claim [`COMPLETE_SQL`] took, with the concurrency key its job held and whether it has
/// dependants (a dependant added while the statement waited for the job's row).
#[derive(QueryableByName)]
pub(super) struct FinishedRow {
    #[diesel(embed)]
    pub(super) token: TokenRow,
    #[diesel(sql_type = Nullable<Text>)]
    pub(super) concurrency_key: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub(super) has_dependants: bool,
}

/// A job id returned by a statement.
#[derive(QueryableByName)]
pub(super) struct JobIdRow {
    #[diesel(sql_type = BigInt)]
    pub(super) job_id: i64,
}

/// Takes up to `$3` ready rows of the kinds `$4` (filtered by `{filter}`, which may use `$5`),
/// claims them for process `$1` at `$2`, in one statement, without writing the job rows (the
/// attempt is counted when it ends, see `lifecycle`); nothing if
/// the process row is gone. KEY SHARE on the process row: a concurrent reap (DELETE) waits
/// for this claim to commit and then sees its claims, while heartbeats (UPDATE of non-key
/// columns) do not wait.
pub(super) const CLAIM_SQL: &str = "
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
    RETURNING r.job_id, r.created_at
), claims AS (
    INSERT INTO solidq_claimed_executions (job_id, process_id, created_at)
    SELECT job_id, $1, $2 FROM taken ORDER BY job_id
    RETURNING id, job_id
)
SELECT j.id AS job_id, claims.id AS claim_id, j.class_name, j.arguments, j.queue_name,
       j.priority, j.attempts + 1 AS attempts, j.max_attempts, taken.created_at AS ready_at, j.rate_limit_key
FROM claims JOIN solidq_jobs j ON j.id = claims.job_id JOIN taken ON taken.job_id = claims.job_id";

/// Deletes the claims of the pairs (`$1` claim ids, `$2` job ids) that still exist and whose
/// jobs neither belong to a batch nor have dependants (those finish in a transaction that also
/// counts them: `store::composition`), marks their
/// jobs finished at `$3` with the attempt counted and the unique key given up, and returns the
/// claims taken with the concurrency keys their jobs held: one statement for a batch of
/// finishes, one write per job row.
///
/// The UPDATE returns the claim ids itself (RETURNING may name the tables of its FROM): a join
/// of the two CTEs would be planned as a nested loop over both (the planner guesses one row
/// for each), quadratic in the batch. `c.id = ANY($1)` lets the plan find the claims by primary
/// key whatever the table's statistics say (a plan made while the table looked empty scanned
/// it whole, dead rows included).
pub(super) const COMPLETE_SQL: &str = "
WITH taken AS (
    DELETE FROM solidq_claimed_executions c
    WHERE c.id = ANY($1) AND (c.id, c.job_id) IN (SELECT * FROM unnest($1::int8[], $2::int8[]))
      AND NOT EXISTS (SELECT 1 FROM solidq_jobs m WHERE m.id = c.job_id AND (m.batch_id IS NOT NULL OR m.has_dependants))
    RETURNING c.id AS claim_id, c.job_id
)
UPDATE solidq_jobs j SET finished_at = $3, updated_at = $3, attempts = j.attempts + 1, unique_key = NULL
FROM taken WHERE j.id = taken.job_id
RETURNING taken.claim_id, taken.job_id, j.concurrency_key, j.has_dependants";

/// Deletes up to `$2` scheduled rows due at `$1`, earliest first, skipping rows another
/// dispatcher holds.
pub(super) const TAKE_DUE_SQL: &str = "
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
pub(super) const TAKE_ORPHANS_SQL: &str = "
WITH orphans AS (
    SELECT c.id FROM solidq_claimed_executions c
    WHERE NOT EXISTS (SELECT 1 FROM solidq_processes p WHERE p.id = c.process_id)
    FOR UPDATE OF c SKIP LOCKED
)
DELETE FROM solidq_claimed_executions c USING orphans WHERE c.id = orphans.id
RETURNING c.job_id";

/// Ready and scheduled executions for the jobs `$1` (with `$2` as now).
pub(super) const ENQUEUE_SQL: &str = "
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
pub(super) const ENQUEUE_CHUNK: usize = 10_000;
