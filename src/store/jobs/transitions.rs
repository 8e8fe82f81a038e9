//! What each [`Transition`] writes for a job whose claim was just taken: the one place
//! where an execution's outcome becomes rows (the worker's outcomes and a death alike).

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::store::sql_types::at;

use crate::lifecycle::Transition;
use crate::model::{FailureRecord, JobId};
use crate::store::composition::{self, Ending};
use crate::store::concurrency;
use crate::store::connection::DbConnection;
use crate::store::dialect::Dialect;
use crate::store::executions::{
    count_attempt, end_jobs, hand_back, insert_executions, insert_failed, keys_of, mark_finished, EndState,
};
use crate::store::schema::{solidq_job_failures as failures, solidq_jobs as jobs};

/// When a job delayed by `delay` from `now` runs: no later than the latest time the store
/// keeps ordered on every backend.
fn run_at(now: NaiveDateTime, delay: std::time::Duration) -> NaiveDateTime {
    let latest = crate::model::latest_schedule();
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|delay| now.checked_add_signed(delay))
        .map_or(latest, |at| at.min(latest))
}

/// Applies `transitions` to jobs whose claims were just taken, then lets in the blocked jobs
/// their concurrency keys allow. A job whose cancel was asked for while it ran ends as
/// cancelled instead of running again.
pub(crate) fn apply(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    transitions: &[(JobId, &Transition)],
    now: NaiveDateTime,
) -> QueryResult<()> {
    if transitions.is_empty() {
        return Ok(());
    }
    let ids: Vec<JobId> = transitions.iter().map(|(id, _)| *id).collect();
    let cancel_requested: HashSet<JobId> = jobs::table
        .filter(jobs::id.eq_any(&ids))
        .filter(jobs::cancel_requested_at.is_not_null())
        .select(jobs::id)
        .load::<JobId>(conn)?
        .into_iter()
        .collect();
    let mut complete = Vec::new();
    let mut release = Vec::new();
    let mut again = Vec::new();
    let mut snoozed = Vec::new();
    let mut cancelled = Vec::new();
    for (job_id, transition) in transitions {
        let ends = matches!(transition, Transition::Complete | Transition::Fail(_) | Transition::Discard(_));
        if cancel_requested.contains(job_id) && !ends {
            // An execution that ran counts its attempt; one released unstarted or snoozed
            // does not.
            if matches!(transition, Transition::Retry(..) | Transition::Cancel) {
                count_attempt(conn, &[*job_id], now)?;
            }
            cancelled.push(*job_id);
            continue;
        }
        match transition {
            Transition::Complete => complete.push(*job_id),
            Transition::Release => release.push(*job_id),
            Transition::Retry(error, delay) => {
                diesel::update(jobs::table.find(job_id))
                    .set((
                        jobs::attempts.eq(jobs::attempts + 1),
                        jobs::last_error.eq(error.to_json()),
                        jobs::scheduled_at.eq(at(run_at(now, *delay))),
                        jobs::updated_at.eq(at(now)),
                    ))
                    .execute(conn)?;
                record_failure(conn, *job_id, error, now)?;
                again.push(*job_id);
            }
            Transition::Fail(error) => fail_one(conn, *job_id, error, now)?,
            Transition::Snooze(delay) => {
                diesel::update(jobs::table.find(job_id))
                    .set((jobs::scheduled_at.eq(at(run_at(now, *delay))), jobs::updated_at.eq(at(now))))
                    .execute(conn)?;
                snoozed.push(*job_id);
            }
            Transition::Discard(error) => {
                count_attempt(conn, &[*job_id], now)?;
                record_failure(conn, *job_id, error, now)?;
                end_jobs(conn, &[*job_id], EndState::Discarded, Some(error), now)?;
            }
            Transition::Cancel => {
                // The handler ran (and was told to stop): the attempt counts.
                count_attempt(conn, &[*job_id], now)?;
                cancelled.push(*job_id);
            }
        }
    }
    mark_finished(conn, &complete, now)?;
    hand_back(conn, &release, now)?;
    insert_executions(conn, &again, now)?;
    insert_executions(conn, &snoozed, now)?;
    end_jobs(conn, &cancelled, EndState::Cancelled, None, now)?;
    let keys = keys_of(conn, &ids)?;
    concurrency::release_keys(dialect, conn, &keys, now)?;
    // What the ends mean for batches and waiting jobs, in this same transaction.
    let mut ended: Vec<(JobId, Ending)> = complete.iter().map(|id| (*id, Ending::Succeeded)).collect();
    ended.extend(cancelled.iter().map(|id| (*id, Ending::Failed)));
    ended.extend(
        transitions
            .iter()
            .filter(|(_, t)| matches!(t, Transition::Fail(_) | Transition::Discard(_)))
            .map(|(id, _)| (*id, Ending::Failed)),
    );
    composition::jobs_ended(dialect, conn, &ended, now)?;
    Ok(())
}

/// Moves one job (its claim already taken) to failed with `error`, its attempt counted and
/// its unique key given up.
fn fail_one(conn: &mut DbConnection, job_id: JobId, error: &FailureRecord, now: NaiveDateTime) -> QueryResult<()> {
    insert_failed(conn, job_id, error, now)?;
    diesel::update(jobs::table.find(job_id))
        .set((
            jobs::attempts.eq(jobs::attempts + 1),
            jobs::last_error.eq(error.to_json()),
            jobs::unique_key.eq(None::<String>),
            jobs::updated_at.eq(at(now)),
        ))
        .execute(conn)?;
    record_failure(conn, job_id, error, now)
}

/// Adds `error` to the failure history of `job_id` (`solidq_job_failures`, which the job's
/// page lists), as the attempt just counted. Failures only: finishing writes nothing here.
fn record_failure(
    conn: &mut DbConnection,
    job_id: JobId,
    error: &FailureRecord,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let attempt: i32 = jobs::table.find(job_id).select(jobs::attempts).first(conn)?;
    diesel::insert_into(failures::table)
        .values((
            failures::job_id.eq(job_id),
            failures::attempt.eq(attempt),
            failures::error_kind.eq(error.kind.as_str()),
            failures::message.eq(&error.message),
            failures::backtrace.eq(&error.backtrace),
            failures::cause.eq(&error.cause),
            failures::created_at.eq(at(now)),
        ))
        .execute(conn)?;
    Ok(())
}
