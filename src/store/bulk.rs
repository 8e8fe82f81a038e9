//! Bulk actions on what a dashboard page showed: retry, discard or cancel a selection of jobs
//! (the ids shown, or the page's query up to the newest id when it was drawn), and retry or
//! discard one group of failures.
//!
//! A selection never reaches jobs that arrived after the page was drawn: a query selection
//! carries the page's `upper_id` and only jobs with ids up to it are touched. The jobs are
//! found with reads (the bounded windows of [`Store::page_jobs`]) and changed in write
//! transactions of at most [`ACTION_BATCH`] jobs, each of which decides job by job by taking
//! the row that holds the job in its state (deleting its execution row, or updating it only
//! while it still has its end state): a job that moved meanwhile is left alone and not
//! counted. No transaction holds the write lock longer than one batch.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::store::sql_types::at;
use serde::Serialize;

use super::connection::DbConnection;
use super::dialect::take_ids;
use super::executions::EndState;
use super::inspect::jobs_on;
use super::manage::{end_taken, restart, ACTION_BATCH};
use super::schema::{
    solidq_blocked_executions as blocked, solidq_claimed_executions as claimed, solidq_failed_executions as failed,
    solidq_jobs as jobs, solidq_ready_executions as ready, solidq_scheduled_executions as scheduled,
    solidq_waiting_executions as waiting,
};
use super::views::jobs::{matching_ids_on, window_on};
use super::views::{FailureGroupKey, JobQuery, SCAN_BUDGET};
use super::{Store, StoreError, StoreResult};
use crate::model::{JobId, JobState};

/// Which jobs a bulk action acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum JobSelection {
    /// These jobs (those shown, or ticked, on a page), whatever their states; at most
    /// [`MAX_SELECTED_IDS`].
    Ids(Vec<JobId>),
    /// Every job the query selects (its `after` cursor and `limit` are ignored) with an id up
    /// to `upper_id`, the newest id when the page was drawn ([`JobPage::upper_id`](super::views::JobPage)).
    Query {
        /// The page's query.
        query: JobQuery,
        /// The newest id the action may touch.
        upper_id: JobId,
    },
}

/// Ids a [`JobSelection::Ids`] may hold.
pub const MAX_SELECTED_IDS: usize = 10_000;

/// What a bulk action did, for the page and the audit line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActionOutcome {
    /// The jobs it changed, in id order.
    pub changed: Vec<JobId>,
    /// Jobs of the selection it left alone: in a state the action does not apply to, gone,
    /// or moved to another state while the action ran.
    pub skipped: usize,
}

/// A bulk action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Retry,
    Discard,
    Cancel,
}

impl Action {
    fn applies_to(self, state: JobState) -> bool {
        match self {
            Action::Retry => matches!(state, JobState::Failed | JobState::Discarded | JobState::Cancelled),
            Action::Discard => {
                matches!(
                    state,
                    JobState::Ready | JobState::Scheduled | JobState::Blocked | JobState::Waiting | JobState::Failed
                )
            }
            Action::Cancel => {
                matches!(
                    state,
                    JobState::Ready | JobState::Scheduled | JobState::Blocked | JobState::Waiting | JobState::Claimed
                )
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Action::Retry => "retried",
            Action::Discard => "discarded",
            Action::Cancel => "cancelled",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Action::Retry => "retrying selected jobs",
            Action::Discard => "discarding selected jobs",
            Action::Cancel => "cancelling selected jobs",
        }
    }
}

/// Deletes the execution rows that hold `ids` in waiting `state`; the ids taken.
fn take_at_rest(conn: &mut DbConnection, ids: &[JobId], state: JobState) -> QueryResult<Vec<JobId>> {
    macro_rules! take {
        ($table:ident) => {
            take_ids!(conn, $table, $table::table.filter($table::job_id.eq_any(ids)); $table::job_id)
        };
    }
    match state {
        JobState::Ready => take!(ready),
        JobState::Scheduled => take!(scheduled),
        JobState::Blocked => take!(blocked),
        JobState::Waiting => take!(waiting),
        JobState::Failed => take!(failed),
        _ => Ok(Vec::new()),
    }
}

/// Applies `action` to `ids`, all last seen in `state`, in the current write transaction;
/// the ids changed.
fn apply_on(
    store: &Store,
    conn: &mut DbConnection,
    action: Action,
    state: JobState,
    ids: &[JobId],
    now: NaiveDateTime,
) -> QueryResult<Vec<JobId>> {
    if ids.is_empty() || !action.applies_to(state) {
        return Ok(Vec::new());
    }
    let taken = match (action, state) {
        (Action::Retry, JobState::Failed) => {
            let taken = take_at_rest(conn, ids, state)?;
            restart(store, conn, &taken, now)?;
            taken
        }
        (Action::Retry, _) => {
            // Ended jobs: taken while they still have the end state seen.
            let end = if state == JobState::Discarded { EndState::Discarded } else { EndState::Cancelled };
            let taken: Vec<JobId> = take_ids!(
                conn,
                jobs,
                jobs::table
                    .filter(jobs::id.eq_any(ids))
                    .filter(jobs::finished_at.is_not_null())
                    .filter(jobs::end_state.eq(end.as_str())),
                set jobs::updated_at.eq(at(now));
                jobs::id
            )?;
            restart(store, conn, &taken, now)?;
            taken
        }
        (Action::Cancel, JobState::Claimed) => take_ids!(
            conn,
            jobs,
            jobs::table
                .filter(jobs::id.eq_any(ids))
                .filter(jobs::cancel_requested_at.is_null())
                .filter(jobs::id.eq_any(claimed::table.select(claimed::job_id))),
            set jobs::cancel_requested_at.eq(at(now));
            jobs::id
        )?,
        (Action::Discard | Action::Cancel, _) => {
            let taken = take_at_rest(conn, ids, state)?;
            let end = if action == Action::Discard { EndState::Discarded } else { EndState::Cancelled };
            end_taken(store.dialect(), conn, &taken, state, end, now)?;
            taken
        }
    };
    Ok(taken)
}

impl Store {
    /// Refuses a selection that cannot be acted on as given.
    fn check_selection(selection: &JobSelection, action: Option<Action>) -> StoreResult<()> {
        match selection {
            JobSelection::Ids(ids) if ids.len() > MAX_SELECTED_IDS => Err(StoreError::InvalidQuery(format!(
                "{} jobs selected; at most {MAX_SELECTED_IDS} ids at once (select by query instead)",
                ids.len()
            ))),
            JobSelection::Ids(_) => Ok(()),
            JobSelection::Query { query, .. } => {
                let query = JobQuery { after: None, limit: 1, ..query.clone() };
                if let Some(problem) = query.problem() {
                    return Err(StoreError::InvalidQuery(problem));
                }
                match action {
                    Some(action) if !action.applies_to(query.state) => {
                        Err(StoreError::InvalidQuery(format!("{} jobs cannot be {}", query.state, action.name())))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Calls `each` with the ids of `query`'s jobs up to `upper_id`, one read window at a time
    /// (newest first); stops early when `each` returns false.
    fn for_each_window(
        &self,
        query: &JobQuery,
        upper_id: JobId,
        mut each: impl FnMut(&Store, Vec<JobId>) -> StoreResult<bool>,
    ) -> StoreResult<()> {
        let mut query = JobQuery { after: None, upper_id: Some(upper_id), ..query.clone() };
        loop {
            let (window, ids) = self.bounded_read("selecting jobs", |conn| {
                let window = window_on(conn, &query, upper_id, SCAN_BUDGET)?;
                let keys: Vec<JobId> = window.iter().map(|(_, id)| *id).collect();
                let ids = if query.text.is_some() || query.queue.is_some() || query.kind.is_some() {
                    matching_ids_on(conn, &query, &keys)?
                } else {
                    keys
                };
                Ok((window, ids))
            })?;
            if !ids.is_empty() && !each(self, ids)? {
                return Ok(());
            }
            if window.len() < SCAN_BUDGET {
                return Ok(());
            }
            query.after = window.last().map(|&(finished_at, id)| super::views::JobCursor { finished_at, id });
        }
    }

    /// How many jobs `selection` holds now: the ids given that exist, or the jobs the query
    /// selects up to its `upper_id`. A query over ended jobs with filters reads every ended
    /// key up to `upper_id` (in bounded windows), so it takes time on a million rows.
    pub fn count_selection(&self, selection: &JobSelection) -> StoreResult<u64> {
        Self::check_selection(selection, None)?;
        match selection {
            JobSelection::Ids(ids) => self.bounded_read("counting selected jobs", |conn| {
                let mut n = 0;
                for chunk in ids.chunks(1000) {
                    n += jobs::table.filter(jobs::id.eq_any(chunk)).count().get_result::<i64>(conn)?;
                }
                Ok(u64::try_from(n).unwrap_or(0))
            }),
            JobSelection::Query { query, upper_id } => {
                let mut n = 0u64;
                self.for_each_window(query, *upper_id, |_, ids| {
                    n += ids.len() as u64;
                    Ok(true)
                })?;
                Ok(n)
            }
        }
    }

    fn act_on_selection(
        &self,
        selection: &JobSelection,
        action: Action,
        now: NaiveDateTime,
    ) -> StoreResult<ActionOutcome> {
        Self::check_selection(selection, Some(action))?;
        let mut outcome = ActionOutcome::default();
        let mut act = |store: &Store, state: Option<JobState>, ids: Vec<JobId>| -> StoreResult<()> {
            for chunk in ids.chunks(ACTION_BATCH) {
                let changed = store.write(action.what(), |conn| {
                    // With no state given (ids picked by hand), each job's state now decides.
                    let mut by_state: HashMap<JobState, Vec<JobId>> = HashMap::new();
                    match state {
                        Some(state) => {
                            by_state.insert(state, chunk.to_vec());
                        }
                        None => {
                            for row in jobs_on(conn, chunk)? {
                                if let Some(state) = row.state {
                                    by_state.entry(state).or_default().push(row.id);
                                }
                            }
                        }
                    }
                    let mut changed = Vec::new();
                    for (state, ids) in by_state {
                        changed.extend(apply_on(store, conn, action, state, &ids, now)?);
                    }
                    Ok(changed)
                })?;
                outcome.skipped += chunk.len() - changed.len();
                outcome.changed.extend(changed);
            }
            Ok(())
        };
        match selection {
            JobSelection::Ids(ids) => {
                let mut ids = ids.clone();
                ids.sort_unstable();
                ids.dedup();
                act(self, None, ids)?;
            }
            JobSelection::Query { query, upper_id } => {
                let state = query.state;
                self.for_each_window(query, *upper_id, |store, ids| {
                    act(store, Some(state), ids)?;
                    Ok(true)
                })?;
            }
        }
        outcome.changed.sort_unstable();
        if action == Action::Retry && !outcome.changed.is_empty() {
            self.jobs_ready();
        }
        Ok(outcome)
    }

    /// Retries the failed, discarded and cancelled jobs of `selection` (as
    /// [`Store::retry_job`] does), [`ACTION_BATCH`] per transaction.
    pub fn retry_selection(&self, selection: &JobSelection, now: NaiveDateTime) -> StoreResult<ActionOutcome> {
        self.act_on_selection(selection, Action::Retry, now)
    }

    /// Discards the waiting (ready, scheduled, blocked) and failed jobs of `selection` (as
    /// [`Store::discard_job`] does), [`ACTION_BATCH`] per transaction.
    pub fn discard_selection(&self, selection: &JobSelection, now: NaiveDateTime) -> StoreResult<ActionOutcome> {
        self.act_on_selection(selection, Action::Discard, now)
    }

    /// Cancels the waiting and running jobs of `selection` (as [`Store::cancel_job`] does: a
    /// running job is asked to stop), [`ACTION_BATCH`] per transaction.
    pub fn cancel_selection(&self, selection: &JobSelection, now: NaiveDateTime) -> StoreResult<ActionOutcome> {
        self.act_on_selection(selection, Action::Cancel, now)
    }

    /// The failed jobs of group `key` with ids up to `upper_id`, in id order.
    fn failure_group_ids(&self, key: &FailureGroupKey, upper_id: JobId) -> StoreResult<Vec<JobId>> {
        self.bounded_read("selecting a failure group", |conn| {
            failed::table
                .inner_join(jobs::table)
                .filter(jobs::class_name.eq(&key.kind))
                .filter(failed::error_kind.eq(&key.error_kind))
                .filter(failed::message.eq(&key.message))
                .filter(failed::job_id.le(upper_id))
                .order(failed::job_id)
                .select(failed::job_id)
                .load(conn)
        })
    }

    fn act_on_group(
        &self,
        key: &FailureGroupKey,
        upper_id: JobId,
        action: Action,
        now: NaiveDateTime,
    ) -> StoreResult<ActionOutcome> {
        let ids = self.failure_group_ids(key, upper_id)?;
        let mut outcome = ActionOutcome::default();
        for chunk in ids.chunks(ACTION_BATCH) {
            let changed =
                self.write(action.what(), |conn| apply_on(self, conn, action, JobState::Failed, chunk, now))?;
            outcome.skipped += chunk.len() - changed.len();
            outcome.changed.extend(changed);
        }
        outcome.changed.sort_unstable();
        if action == Action::Retry && !outcome.changed.is_empty() {
            self.jobs_ready();
        }
        Ok(outcome)
    }

    /// Retries the failed jobs of group `key` with ids up to `upper_id` (the group's
    /// [`max_job_id`](super::views::FailureGroup::max_job_id) when shown).
    pub fn retry_failure_group(
        &self,
        key: &FailureGroupKey,
        upper_id: JobId,
        now: NaiveDateTime,
    ) -> StoreResult<ActionOutcome> {
        self.act_on_group(key, upper_id, Action::Retry, now)
    }

    /// Discards the failed jobs of group `key` with ids up to `upper_id`.
    pub fn discard_failure_group(
        &self,
        key: &FailureGroupKey,
        upper_id: JobId,
        now: NaiveDateTime,
    ) -> StoreResult<ActionOutcome> {
        self.act_on_group(key, upper_id, Action::Discard, now)
    }
}
