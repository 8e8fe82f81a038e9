//! Concurrency limits: which jobs with a concurrency key may be ready or claimed, and the
//! blocked jobs let in when a holder ends.
//!
//! Holders are counted from where jobs are, never kept in a counter: a job with key `K` holds
//! it while it is ready, or claimed less than its duration ago. So a holder that finishes,
//! fails, is retried later, is cancelled, or whose process is found dead stops holding in the
//! same transaction, and [`release_keys`] lets the next blocked jobs in at once (Solid Queue's
//! semaphores leaked there: #546, #735). The dispatcher also sweeps every key with blocked
//! jobs now and then, in case a release was cut short by a crash between two transactions.
//!
//! Admission and release of one key are serialized by [`Dialect::lock_key`] (PostgreSQL: a
//! transaction advisory lock; SQLite: the write lock already does it).

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::store::sql_types::at;

use super::composition::{self, Ending};
use super::connection::DbConnection;
use super::dialect::Dialect;
use super::executions::{end_jobs, insert_ready, EndState};
use super::params::ID_CHUNK;
use super::schema::{
    solidq_blocked_executions as blocked, solidq_claimed_executions as claimed, solidq_jobs as jobs,
    solidq_ready_executions as ready,
};
use crate::model::{FailureKind, FailureRecord, JobId, OnConflict};

/// Jobs among `ids`, just made ready, that have a concurrency key go through their limit:
/// they wait as blocked, and as many as the limit allows (highest priority first, blocked
/// jobs already waiting included) are let back in; those left over whose kind discards on
/// conflict end as discarded. Returns how many of `ids` were held back.
pub(crate) fn admit(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    ids: &[JobId],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let mut limited: Vec<(JobId, String, String, i32, Option<String>)> = Vec::new();
    for chunk in ids.chunks(ID_CHUNK) {
        limited.extend(
            jobs::table
                .filter(jobs::id.eq_any(chunk))
                .filter(jobs::concurrency_key.is_not_null())
                .select((
                    jobs::id,
                    jobs::concurrency_key.assume_not_null(),
                    jobs::queue_name,
                    jobs::priority,
                    jobs::concurrency_on_conflict,
                ))
                .load::<(JobId, String, String, i32, Option<String>)>(conn)?,
        );
    }
    if limited.is_empty() {
        return Ok(0);
    }
    let limited_ids: Vec<JobId> = limited.iter().map(|(id, ..)| *id).collect();
    for chunk in limited_ids.chunks(ID_CHUNK) {
        diesel::delete(ready::table.filter(ready::job_id.eq_any(chunk))).execute(conn)?;
    }
    let rows: Vec<_> = limited
        .iter()
        .map(|(id, key, queue, priority, _)| {
            (
                blocked::job_id.eq(*id),
                blocked::queue_name.eq(queue.as_str()),
                blocked::priority.eq(*priority),
                blocked::concurrency_key.eq(key.as_str()),
                blocked::created_at.eq(at(now)),
            )
        })
        .collect();
    for row in rows {
        diesel::insert_into(blocked::table).values(row).execute(conn)?;
    }
    let keys: BTreeSet<String> = limited.iter().map(|(_, key, ..)| key.clone()).collect();
    release_keys(dialect, conn, &keys, now)?;
    let still_blocked: BTreeSet<JobId> = blocked::table
        .filter(blocked::job_id.eq_any(&limited_ids))
        .select(blocked::job_id)
        .load::<JobId>(conn)?
        .into_iter()
        .collect();
    let discard: Vec<JobId> = limited
        .iter()
        .filter(|(id, _, _, _, on_conflict)| {
            still_blocked.contains(id) && on_conflict.as_deref() == Some(OnConflict::Discard.as_str())
        })
        .map(|(id, ..)| *id)
        .collect();
    if !discard.is_empty() {
        diesel::delete(blocked::table.filter(blocked::job_id.eq_any(&discard))).execute(conn)?;
        let error =
            FailureRecord::new(FailureKind::Discarded, "over its concurrency limit, and its kind discards on conflict");
        end_jobs(conn, &discard, EndState::Discarded, Some(&error), now)?;
        let ended: Vec<(JobId, Ending)> = discard.iter().map(|id| (*id, Ending::Failed)).collect();
        composition::jobs_ended(dialect, conn, &ended, now)?;
    }
    Ok(still_blocked.len())
}

/// Lets blocked jobs of each of `keys` in, highest priority first, while fewer jobs than the
/// limit hold the key. Returns how many were made ready.
pub(crate) fn release_keys(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    keys: &BTreeSet<String>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let mut released = 0;
    for key in keys {
        dialect.lock_key(conn, key)?;
        let first: Option<(i32, Option<i64>)> = blocked::table
            .inner_join(jobs::table)
            .filter(blocked::concurrency_key.eq(key))
            .order((blocked::priority, blocked::job_id))
            .select((jobs::concurrency_limit.assume_not_null(), jobs::concurrency_duration_ms))
            .first(conn)
            .optional()?;
        let Some((limit, duration_ms)) = first else { continue };
        let duration = chrono::Duration::milliseconds(duration_ms.unwrap_or(i64::MAX / 4).min(i64::MAX / 4));
        let cutoff = now
            .checked_sub_signed(duration)
            .map_or(crate::model::earliest_time(), |cutoff| cutoff.max(crate::model::earliest_time()));
        let waiting: i64 =
            ready::table.inner_join(jobs::table).filter(jobs::concurrency_key.eq(key)).count().get_result(conn)?;
        let running: i64 = claimed::table
            .inner_join(jobs::table)
            .filter(jobs::concurrency_key.eq(key))
            .filter(claimed::created_at.gt(at(cutoff)))
            .count()
            .get_result(conn)?;
        let free = i64::from(limit) - waiting - running;
        if free <= 0 {
            continue;
        }
        let next: Vec<JobId> = blocked::table
            .filter(blocked::concurrency_key.eq(key))
            .order((blocked::priority, blocked::job_id))
            .limit(free)
            .select(blocked::job_id)
            .load(conn)?;
        diesel::delete(blocked::table.filter(blocked::job_id.eq_any(&next))).execute(conn)?;
        released += insert_ready(conn, &next, now)?;
    }
    Ok(released)
}

/// Every key that has blocked jobs, for the dispatcher's sweep.
pub(crate) fn blocked_keys(conn: &mut DbConnection) -> QueryResult<BTreeSet<String>> {
    Ok(blocked::table.select(blocked::concurrency_key).distinct().load::<String>(conn)?.into_iter().collect())
}
