//! Execution rows and the job columns that go with them: the helpers every role uses to move
//! a job from one state to another (a job's state is which execution table holds it).
//! Each runs inside the caller's transaction; none decides anything.

use std::collections::BTreeSet;

use crate::store::sql_types::{at, Moment};
use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::connection::DbConnection;
use super::params::ID_CHUNK;
use super::schema::{
    solidq_failed_executions as failed, solidq_jobs as jobs, solidq_ready_executions as ready,
    solidq_scheduled_executions as scheduled,
};
use crate::model::{FailureRecord, JobId};

/// How a job ended other than finishing: the `end_state` column (empty: finished).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndState {
    /// Ended without running again (by its handler, an operator or its concurrency limit).
    Discarded,
    /// Cancelled by an operator.
    Cancelled,
}

impl EndState {
    /// The column's text.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EndState::Discarded => "discarded",
            EndState::Cancelled => "cancelled",
        }
    }

    /// The end state a column's text names.
    pub(crate) fn parse(text: &str) -> Option<EndState> {
        [EndState::Discarded, EndState::Cancelled].into_iter().find(|state| state.as_str() == text)
    }
}

/// Keys of the jobs among `ids` that have one (sorted, so that locks are taken in one order).
pub(crate) fn keys_of(conn: &mut DbConnection, ids: &[JobId]) -> QueryResult<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let found: Vec<Option<String>> = jobs::table
            .filter(jobs::id.eq_any(chunk))
            .filter(jobs::concurrency_key.is_not_null())
            .select(jobs::concurrency_key)
            .distinct()
            .load(conn)?;
        keys.extend(found.into_iter().flatten());
    }
    Ok(keys)
}

/// Inserts ready executions for `ids` (whatever their scheduled_at); returns how many.
pub(crate) fn insert_ready(conn: &mut DbConnection, ids: &[JobId], now: NaiveDateTime) -> QueryResult<usize> {
    ids.chunks(ID_CHUNK).map(|chunk| insert_ready_rows(conn, chunk, now, false)).sum()
}

/// Inserts ready executions for the jobs of `chunk` (with `due_only`, those due at `now`).
fn insert_ready_rows(
    conn: &mut DbConnection,
    chunk: &[JobId],
    now: NaiveDateTime,
    due_only: bool,
) -> QueryResult<usize> {
    let mut rows = jobs::table.filter(jobs::id.eq_any(chunk)).into_boxed();
    if due_only {
        rows = rows.filter(jobs::scheduled_at.is_null().or(jobs::scheduled_at.le(at(now))));
    }
    diesel::insert_into(ready::table)
        .values(rows.select((
            jobs::id,
            jobs::queue_name,
            jobs::priority,
            at(now).into_sql::<Moment>(),
            jobs::class_name,
        )))
        .into_columns((ready::job_id, ready::queue_name, ready::priority, ready::created_at, ready::class_name))
        .execute(conn)
}

/// Inserts a ready execution for each of `ids` due at `now` and a scheduled one for the rest,
/// reading queue, priority and time from the job rows.
pub(crate) fn insert_executions(conn: &mut DbConnection, ids: &[JobId], now: NaiveDateTime) -> QueryResult<()> {
    for chunk in ids.chunks(ID_CHUNK) {
        insert_ready_rows(conn, chunk, now, true)?;
        diesel::insert_into(scheduled::table)
            .values(jobs::table.filter(jobs::id.eq_any(chunk)).filter(jobs::scheduled_at.gt(at(now))).select((
                jobs::id,
                jobs::queue_name,
                jobs::priority,
                jobs::scheduled_at.assume_not_null(),
                at(now).into_sql::<Moment>(),
            )))
            .into_columns((
                scheduled::job_id,
                scheduled::queue_name,
                scheduled::priority,
                scheduled::scheduled_at,
                scheduled::created_at,
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Returns jobs whose claims were just taken to ready without counting an attempt: they were
/// never started, or a graceful drain cut them short.
pub(crate) fn hand_back(conn: &mut DbConnection, ids: &[JobId], now: NaiveDateTime) -> QueryResult<usize> {
    insert_ready(conn, ids, now)
}

/// Counts one more attempt for each of `ids` (an execution ended or its process died).
pub(crate) fn count_attempt(conn: &mut DbConnection, ids: &[JobId], now: NaiveDateTime) -> QueryResult<()> {
    for chunk in ids.chunks(ID_CHUNK) {
        diesel::update(jobs::table.filter(jobs::id.eq_any(chunk)))
            .set((jobs::attempts.eq(jobs::attempts + 1), jobs::updated_at.eq(at(now))))
            .execute(conn)?;
    }
    Ok(())
}

/// Marks the jobs `ids` (their claims just taken) finished at `now`, their attempt counted and
/// their unique keys given up; returns the concurrency keys they held.
pub(crate) fn mark_finished(
    conn: &mut DbConnection,
    ids: &[JobId],
    now: NaiveDateTime,
) -> QueryResult<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let query = diesel::update(jobs::table.filter(jobs::id.eq_any(chunk))).set((
            jobs::finished_at.eq(at(now)),
            jobs::updated_at.eq(at(now)),
            jobs::attempts.eq(jobs::attempts + 1),
            jobs::unique_key.eq(None::<String>),
        ));
        match conn {
            // One statement on SQLite too: the keys come back with the update.
            DbConnection::Sqlite(conn) => {
                keys.extend(query.returning(jobs::concurrency_key).load::<Option<String>>(conn)?.into_iter().flatten())
            }
            _ => {
                query.execute(conn)?;
                keys.extend(keys_of(conn, chunk)?);
            }
        }
    }
    Ok(keys)
}

/// Ends the jobs `ids` (out of every execution table already) as `end_state` at `now`, with
/// `error` as their last error if given; their unique keys are given up.
pub(crate) fn end_jobs(
    conn: &mut DbConnection,
    ids: &[JobId],
    end_state: EndState,
    error: Option<&FailureRecord>,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let error = error.map(FailureRecord::to_json);
    for chunk in ids.chunks(ID_CHUNK) {
        let target = jobs::table.filter(jobs::id.eq_any(chunk));
        let ended = (
            jobs::finished_at.eq(at(now)),
            jobs::end_state.eq(end_state.as_str()),
            jobs::unique_key.eq(None::<String>),
            jobs::updated_at.eq(at(now)),
        );
        match &error {
            Some(error) => diesel::update(target).set((ended, jobs::last_error.eq(error))).execute(conn)?,
            None => diesel::update(target).set(ended).execute(conn)?,
        };
    }
    Ok(())
}

/// The failed execution of `job_id`, with `error` in typed columns.
pub(crate) fn insert_failed(
    conn: &mut DbConnection,
    job_id: JobId,
    error: &FailureRecord,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(failed::table)
        .values((
            failed::job_id.eq(job_id),
            failed::error_kind.eq(error.kind.as_str()),
            failed::message.eq(&error.message),
            failed::backtrace.eq(&error.backtrace),
            failed::cause.eq(&error.cause),
            failed::created_at.eq(at(now)),
        ))
        .execute(conn)?;
    Ok(())
}
