//! Job lists (by state, filtered, keyset-paged), one job with its whole history, and failed
//! jobs grouped by error.
//!
//! # Paging and bounded scans
//! A list is read newest first in a keyset order on an index: ended jobs (finished, discarded,
//! cancelled) by `(finished_at, id)`, the others by job id in their execution table. A page
//! reads the next *window* of that order after its cursor: `limit + 1` keys without filters,
//! else at most [`SCAN_BUDGET`] keys, of which it keeps those matching the queue, kind and
//! text filters. When the window holds more than `limit` matches the page ends at the
//! `limit`-th and the cursor continues after it; when the whole budget was scanned without
//! filling the page, the page says so ([`JobPage::budget_exhausted`]) and its cursor continues
//! after the last key scanned, so that a rare match among a million ended jobs costs one
//! bounded read per page ("scanned 5,000, continue") instead of one unbounded read.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime};
use diesel::dsl::max;
use diesel::prelude::*;

use crate::store::sql_types::At;
use serde::Serialize;

use super::overview::state_count_on;
use super::{cap_limit, queue_and_kind_of, Count, COUNT_CAP};
use crate::model::{FailureKind, JobId, JobState, ProcessId};
use crate::store::connection::DbConnection;
use crate::store::executions::EndState;
use crate::store::inspect::{jobs_on, JobRow};
use crate::store::schema::{
    solidq_blocked_executions as blocked, solidq_claimed_executions as claimed, solidq_failed_executions as failed,
    solidq_job_failures as failures, solidq_jobs as jobs, solidq_processes as processes,
    solidq_ready_executions as ready, solidq_scheduled_executions as scheduled, solidq_waiting_executions as waiting,
};
use crate::store::{Store, StoreError, StoreResult};

/// Keys a filtered page reads at most (see the module's documentation).
pub const SCAN_BUDGET: usize = 5_000;

/// Rows a page returns at most.
pub const MAX_PAGE: usize = 500;

/// Failures a job's page lists at most (the newest).
pub const MAX_FAILURES_SHOWN: usize = 1_000;

diesel::define_sql_function! {
    /// SQL `lower`: ASCII only on SQLite, every letter on PostgreSQL.
    fn lower(text: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Where a page of jobs continues: after this key, in the list's newest-first order.
///
/// As a URL parameter ([`fmt::Display`] / [`FromStr`]): `<id>` for lists ordered by id,
/// `<id>@<finished_at as microseconds since 1970>` for ended jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobCursor {
    /// The last key's end time (lists of ended jobs only).
    pub finished_at: Option<NaiveDateTime>,
    /// The last key's job id.
    pub id: JobId,
}

impl fmt::Display for JobCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.finished_at {
            Some(at) => write!(f, "{}@{}", self.id, at.and_utc().timestamp_micros()),
            None => write!(f, "{}", self.id),
        }
    }
}

impl FromStr for JobCursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("bad page cursor {text:?}: expected <id> or <id>@<microseconds>");
        let (id, at) = match text.split_once('@') {
            Some((id, at)) => (id, Some(at)),
            None => (text, None),
        };
        let id: JobId = id.parse().map_err(|_| bad())?;
        let finished_at = match at {
            None => None,
            Some(at) => {
                let micros: i64 = at.parse().map_err(|_| bad())?;
                Some(DateTime::from_timestamp_micros(micros).ok_or_else(bad)?.naive_utc())
            }
        };
        Ok(JobCursor { finished_at, id })
    }
}

/// Which jobs a list shows: one state, optionally filtered, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobQuery {
    /// The state.
    pub state: JobState,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs whose JSON arguments contain this text (case-insensitive; ASCII letters only
    /// on SQLite). `%` and `_` match themselves.
    pub text: Option<String>,
    /// Continue after this key (the previous page's [`JobPage::next`]).
    pub after: Option<JobCursor>,
    /// Rows per page, 1 to [`MAX_PAGE`].
    pub limit: usize,
    /// Only jobs with ids up to this one: the newest id when the first page was drawn, so that
    /// later pages and actions see the same set.
    pub upper_id: Option<JobId>,
}

impl JobQuery {
    /// The first page of 50 jobs in `state`, unfiltered.
    pub fn new(state: JobState) -> Self {
        JobQuery { state, queue: None, kind: None, text: None, after: None, limit: 50, upper_id: None }
    }

    /// Why the query cannot run, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Some(format!("page size {} is out of range: 1 to {MAX_PAGE}", self.limit));
        }
        if let Some(after) = self.after {
            let ended = is_ended(self.state);
            if ended != after.finished_at.is_some() {
                return Some(format!(
                    "page cursor {after} does not fit the {} list: {}",
                    self.state,
                    if ended { "expected <id>@<microseconds>" } else { "expected <id>" }
                ));
            }
        }
        if self.text.as_deref().is_some_and(|t| t.chars().count() > 200) {
            return Some("text filter is longer than 200 characters".to_string());
        }
        None
    }

    fn has_filters(&self) -> bool {
        self.queue.is_some() || self.kind.is_some() || self.text.is_some()
    }
}

/// One page of a job list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobPage {
    /// The jobs, newest first.
    pub rows: Vec<JobRow>,
    /// The cursor of the next page, if the list may go on.
    pub next: Option<JobCursor>,
    /// How many jobs the whole list has (capped or estimated); `None` when the list has a text
    /// filter, or a queue or kind filter on ended jobs: those are not counted, to keep the
    /// read bounded.
    pub total: Option<Count>,
    /// Keys this page read.
    pub scanned: usize,
    /// Whether the page stopped at [`SCAN_BUDGET`] keys before it found `limit` matches:
    /// the list may go on after `next` although this page is short (or empty).
    pub budget_exhausted: bool,
    /// The query's `upper_id`, or the newest job id when it had none: pass it back with the
    /// next page and with a bulk action.
    pub upper_id: JobId,
}

/// One failed attempt of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureEntry {
    /// Which attempt (1 = the first execution).
    pub attempt: i32,
    /// When it was recorded.
    pub at: NaiveDateTime,
    /// What kind of ending.
    pub kind: FailureKind,
    /// The error, panic or death message.
    pub message: String,
    /// Where a panic happened.
    pub backtrace: Option<String>,
    /// Why a process was judged dead.
    pub cause: Option<String>,
}

/// When things happened to a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// Enqueued.
    pub created_at: NaiveDateTime,
    /// Due (its schedule, or the retry's time).
    pub scheduled_at: Option<NaiveDateTime>,
    /// When its current claim was taken, if it is running.
    pub claimed_at: Option<NaiveDateTime>,
    /// The process running it.
    pub claimed_by: Option<ProcessId>,
    /// That process's name, if still registered.
    pub claimed_by_name: Option<String>,
    /// That process's host, if still registered.
    pub claimed_by_host: Option<String>,
    /// When a cancel was asked for.
    pub cancel_requested_at: Option<NaiveDateTime>,
    /// When it failed for good, if it is failed.
    pub failed_at: Option<NaiveDateTime>,
    /// When it ended (finished, discarded, cancelled).
    pub ended_at: Option<NaiveDateTime>,
    /// Last change of the row.
    pub updated_at: NaiveDateTime,
}

/// One job with everything its page shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    /// The job row, with its state and arguments (JSON text, as stored: escaping is the page's
    /// job).
    pub job: JobRow,
    /// Its failed attempts, oldest first (at most [`MAX_FAILURES_SHOWN`], the newest).
    pub failures: Vec<FailureEntry>,
    /// When things happened.
    pub timeline: Timeline,
    /// The jobs it runs after and the jobs that run after it.
    pub dependencies: crate::store::composition::Dependencies,
    /// The batch it belongs to (or whose callback it is).
    pub batch: Option<crate::model::BatchId>,
}

/// What identifies a group of failed jobs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FailureGroupKey {
    /// The jobs' kind.
    pub kind: String,
    /// The failure's kind (`FailureKind` name: `Error`, `Panic`, …).
    pub error_kind: String,
    /// The failure's message.
    pub message: String,
}

/// Failed jobs with the same kind and error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureGroup {
    /// What they share.
    pub key: FailureGroupKey,
    /// How many jobs.
    pub count: u64,
    /// The oldest failure.
    pub first_seen: NaiveDateTime,
    /// The newest failure.
    pub last_seen: NaiveDateTime,
    /// The newest job id of the group when read: pass it to a group action so that it leaves
    /// later failures alone.
    pub max_job_id: JobId,
}

pub(crate) fn is_ended(state: JobState) -> bool {
    matches!(state, JobState::Finished | JobState::Discarded | JobState::Cancelled)
}

/// One key of a list's order.
type Key = (Option<NaiveDateTime>, JobId);

/// The next window of `query`'s order: at most `size` keys after its cursor, ids up to `upper`.
pub(crate) fn window_on(conn: &mut DbConnection, query: &JobQuery, upper: JobId, size: usize) -> QueryResult<Vec<Key>> {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let after_id = query.after.map_or(JobId::MAX, |c| c.id);
    macro_rules! by_job_id {
        ($table:ident) => {{
            let ids: Vec<JobId> = $table::table
                .filter($table::job_id.lt(after_id))
                .filter($table::job_id.le(upper))
                .order($table::job_id.desc())
                .select($table::job_id)
                .limit(size)
                .load(conn)?;
            ids.into_iter().map(|id| (None, id)).collect()
        }};
    }
    Ok(match query.state {
        JobState::Ready => by_job_id!(ready),
        JobState::Scheduled => by_job_id!(scheduled),
        JobState::Claimed => by_job_id!(claimed),
        JobState::Blocked => by_job_id!(blocked),
        JobState::Waiting => by_job_id!(waiting),
        JobState::Failed => by_job_id!(failed),
        JobState::Finished | JobState::Discarded | JobState::Cancelled => {
            let mut select = jobs::table
                .filter(jobs::finished_at.is_not_null())
                .filter(jobs::id.le(upper))
                .order((jobs::finished_at.desc(), jobs::id.desc()))
                .select((jobs::finished_at, jobs::id))
                .limit(size)
                .into_boxed();
            select = match query.state {
                JobState::Finished => select.filter(jobs::end_state.is_null()),
                JobState::Discarded => select.filter(jobs::end_state.eq(EndState::Discarded.as_str())),
                _ => select.filter(jobs::end_state.eq(EndState::Cancelled.as_str())),
            };
            if let Some(JobCursor { finished_at: Some(at), id }) = query.after {
                // The first condition bounds the index range; the second breaks ties.
                select = select
                    .filter(jobs::finished_at.le(At(at)))
                    .filter(jobs::finished_at.lt(At(at)).or(jobs::finished_at.eq(At(at)).and(jobs::id.lt(id))));
            }
            select.load(conn)?
        }
    })
}

/// `text` as a LIKE pattern that matches it anywhere, lower-cased, `\` escaping.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The ids among `ids` that match the query's queue, kind and text filters.
fn matching_on(conn: &mut DbConnection, query: &JobQuery, ids: &[JobId]) -> QueryResult<HashSet<JobId>> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(1000) {
        let mut select = jobs::table.filter(jobs::id.eq_any(chunk)).select(jobs::id).into_boxed();
        if let Some(queue) = &query.queue {
            select = select.filter(jobs::queue_name.eq(queue.clone()));
        }
        if let Some(kind) = &query.kind {
            select = select.filter(jobs::class_name.eq(kind.clone()));
        }
        if let Some(text) = &query.text {
            select = select.filter(lower(jobs::arguments).like(contains_pattern(text)).escape('\\'));
        }
        found.extend(select.load::<JobId>(conn)?);
    }
    Ok(found)
}

/// The ids among `keys` that match the query's filters, in the order of `keys`.
pub(crate) fn matching_ids_on(conn: &mut DbConnection, query: &JobQuery, keys: &[JobId]) -> QueryResult<Vec<JobId>> {
    let matching = matching_on(conn, query, keys)?;
    Ok(keys.iter().copied().filter(|id| matching.contains(id)).collect())
}

/// The list's size without a text filter: the state's count, or a capped count of its
/// execution table filtered by queue and kind; `None` for filtered ended jobs.
fn total_on(conn: &mut DbConnection, store: &Store, query: &JobQuery, upper: JobId) -> QueryResult<Option<Count>> {
    if query.text.is_some() {
        return Ok(None);
    }
    if !query.has_filters() && query.upper_id.is_none() {
        return Ok(Some(state_count_on(conn, store, query.state)?));
    }
    // Driven from the execution table (bounded by its job id), which holds only unended jobs.
    macro_rules! filtered {
        ($table:ident) => {{
            let mut select = $table::table
                .inner_join(jobs::table)
                .filter($table::job_id.le(upper))
                .select(jobs::id)
                .limit(cap_limit(COUNT_CAP))
                .into_boxed();
            if let Some(queue) = &query.queue {
                select = select.filter(jobs::queue_name.eq(queue.clone()));
            }
            if let Some(kind) = &query.kind {
                select = select.filter(jobs::class_name.eq(kind.clone()));
            }
            let ids: Vec<JobId> = select.load(conn)?;
            Some(Count::capped(ids.len() as u64, COUNT_CAP))
        }};
    }
    Ok(match query.state {
        JobState::Ready => {
            // The ready table has the queue and kind itself.
            let mut select = ready::table
                .filter(ready::job_id.le(upper))
                .select(ready::job_id)
                .limit(cap_limit(COUNT_CAP))
                .into_boxed();
            if let Some(queue) = &query.queue {
                select = select.filter(ready::queue_name.eq(queue.clone()));
            }
            if let Some(kind) = &query.kind {
                select = select.filter(ready::class_name.eq(kind.clone()));
            }
            let ids: Vec<JobId> = select.load(conn)?;
            Some(Count::capped(ids.len() as u64, COUNT_CAP))
        }
        JobState::Scheduled => filtered!(scheduled),
        JobState::Claimed => filtered!(claimed),
        JobState::Blocked => filtered!(blocked),
        JobState::Failed => filtered!(failed),
        _ if query.has_filters() => None,
        _ => {
            let ids: Vec<JobId> =
                window_on(conn, &JobQuery { after: None, ..query.clone() }, upper, COUNT_CAP as usize + 1)?
                    .into_iter()
                    .map(|(_, id)| id)
                    .collect();
            Some(Count::capped(ids.len() as u64, COUNT_CAP))
        }
    })
}

/// The newest job id.
pub(crate) fn newest_id_on(conn: &mut DbConnection) -> QueryResult<JobId> {
    Ok(jobs::table.select(max(jobs::id)).first::<Option<JobId>>(conn)?.unwrap_or(0))
}

pub(crate) fn page_jobs_on(conn: &mut DbConnection, store: &Store, query: &JobQuery) -> QueryResult<JobPage> {
    let upper = match query.upper_id {
        Some(upper) => upper,
        None => newest_id_on(conn)?,
    };
    let filtered = query.has_filters();
    let size = if filtered { SCAN_BUDGET } else { query.limit + 1 };
    let window = window_on(conn, query, upper, size)?;
    let matches: Vec<Key> = if filtered {
        let ids: Vec<JobId> = window.iter().map(|(_, id)| *id).collect();
        let matching = matching_on(conn, query, &ids)?;
        window.iter().copied().filter(|(_, id)| matching.contains(id)).collect()
    } else {
        window.clone()
    };
    let cursor = |(finished_at, id): Key| JobCursor { finished_at, id };
    let (shown, next, budget_exhausted) = if matches.len() > query.limit {
        (&matches[..query.limit], Some(cursor(matches[query.limit - 1])), false)
    } else if filtered && window.len() == size {
        (&matches[..], window.last().copied().map(cursor), true)
    } else {
        (&matches[..], None, false)
    };
    let ids: Vec<JobId> = shown.iter().map(|(_, id)| *id).collect();
    let mut by_id: BTreeMap<JobId, JobRow> = jobs_on(conn, &ids)?.into_iter().map(|row| (row.id, row)).collect();
    let rows = ids.iter().filter_map(|id| by_id.remove(id)).collect();
    let total = total_on(conn, store, query, upper)?;
    Ok(JobPage { rows, next, total, scanned: window.len(), budget_exhausted, upper_id: upper })
}

fn job_detail_on(conn: &mut DbConnection, id: JobId) -> QueryResult<Option<JobDetail>> {
    let Some(job) = jobs_on(conn, &[id])?.pop() else { return Ok(None) };
    #[allow(clippy::type_complexity)]
    let mut rows: Vec<(i32, NaiveDateTime, String, String, Option<String>, Option<String>)> = failures::table
        .filter(failures::job_id.eq(id))
        .order(failures::id.desc())
        .select((
            failures::attempt,
            failures::created_at,
            failures::error_kind,
            failures::message,
            failures::backtrace,
            failures::cause,
        ))
        .limit(MAX_FAILURES_SHOWN as i64)
        .load(conn)?;
    rows.reverse();
    let failures = rows
        .into_iter()
        .map(|(attempt, at, kind, message, backtrace, cause)| FailureEntry {
            attempt,
            at,
            kind: FailureKind::parse(&kind),
            message,
            backtrace,
            cause,
        })
        .collect();
    let claim: Option<(ProcessId, NaiveDateTime)> = claimed::table
        .filter(claimed::job_id.eq(id))
        .select((claimed::process_id, claimed::created_at))
        .first(conn)
        .optional()?;
    let holder: Option<(String, String)> = match claim {
        Some((process, _)) => {
            processes::table.find(process).select((processes::name, processes::hostname)).first(conn).optional()?
        }
        None => None,
    };
    let failed_at: Option<NaiveDateTime> =
        failed::table.filter(failed::job_id.eq(id)).select(failed::created_at).first(conn).optional()?;
    let (updated_at, batch): (NaiveDateTime, Option<i64>) =
        jobs::table.find(id).select((jobs::updated_at, jobs::batch_id)).first(conn)?;
    let dependencies = crate::store::composition::dependencies_of(conn, id)?;
    let timeline = Timeline {
        created_at: job.created_at,
        scheduled_at: job.scheduled_at,
        claimed_at: claim.map(|(_, at)| at),
        claimed_by: claim.map(|(process, _)| process),
        claimed_by_name: holder.as_ref().map(|(name, _)| name.clone()),
        claimed_by_host: holder.map(|(_, host)| host),
        cancel_requested_at: job.cancel_requested_at,
        failed_at,
        ended_at: job.finished_at,
        updated_at,
    };
    Ok(Some(JobDetail { job, failures, timeline, dependencies, batch }))
}

fn failure_groups_on(conn: &mut DbConnection, limit: usize) -> QueryResult<Vec<FailureGroup>> {
    // Grouped here rather than in SQL: the kind is on the job row and diesel groups by one
    // table's columns. The failed table holds only jobs failed for good and not yet retried
    // or discarded; the statement timeout bounds it.
    let rows: Vec<(String, String, NaiveDateTime, JobId)> =
        failed::table.select((failed::error_kind, failed::message, failed::created_at, failed::job_id)).load(conn)?;
    let ids: Vec<JobId> = rows.iter().map(|row| row.3).collect();
    let mut kinds = queue_and_kind_of(conn, &ids)?;
    let mut by_key: BTreeMap<FailureGroupKey, FailureGroup> = BTreeMap::new();
    for (error_kind, message, at, job_id) in rows {
        let Some((_, kind)) = kinds.remove(&job_id) else { continue };
        let key = FailureGroupKey { kind, error_kind, message };
        let group = by_key.entry(key.clone()).or_insert(FailureGroup {
            key,
            count: 0,
            first_seen: at,
            last_seen: at,
            max_job_id: job_id,
        });
        group.count += 1;
        group.first_seen = group.first_seen.min(at);
        group.last_seen = group.last_seen.max(at);
        group.max_job_id = group.max_job_id.max(job_id);
    }
    let mut groups: Vec<FailureGroup> = by_key.into_values().collect();
    groups.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(b.count.cmp(&a.count)).then(a.key.cmp(&b.key)));
    groups.truncate(limit);
    Ok(groups)
}

impl Store {
    /// One page of the jobs `query` selects, newest first (see the module's documentation
    /// for the order, the cursor and the scan budget). Refuses a query with a bad page size or
    /// a cursor of another list.
    pub fn page_jobs(&self, query: &JobQuery) -> StoreResult<JobPage> {
        if let Some(problem) = query.problem() {
            return Err(StoreError::InvalidQuery(problem));
        }
        self.bounded_read("paging jobs", |conn| page_jobs_on(conn, self, query))
    }

    /// One job with its failures and timeline, if it exists.
    pub fn job_detail(&self, id: JobId) -> StoreResult<Option<JobDetail>> {
        self.bounded_read("reading a job's details", |conn| job_detail_on(conn, id))
    }

    /// Failed jobs grouped by kind, failure kind and message: the `limit` groups with the
    /// latest failures first.
    pub fn failure_groups(&self, limit: usize) -> StoreResult<Vec<FailureGroup>> {
        self.bounded_read("grouping failed jobs", |conn| failure_groups_on(conn, limit))
    }

    /// The newest job id now: what a page fixes as its `upper_id`.
    pub fn newest_job_id(&self) -> StoreResult<JobId> {
        self.bounded_read("reading the newest job id", newest_id_on)
    }
}
