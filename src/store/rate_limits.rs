//! Global rate limits: at most `limit` starts of jobs sharing a key in any period, across
//! every process (see [`RateLimit`](crate::model::RateLimit) and the README's "Rate limits").
//!
//! A sliding-window log, checked when jobs are claimed: every start of a keyed job is a row of
//! `solidq_rate_limit_starts`. In the claiming transaction (PostgreSQL: a second transaction
//! right after its one-statement claim), for each key among the claimed jobs, serialized per
//! key by [`Dialect::lock_key`] on `rate:<key>`, the starts inside the window are counted and:
//! - up to `limit − count` claims are admitted now (their starts logged last, at the time the
//!   transaction ends);
//! - a claim whose place in the window frees within the hold horizon (a tenth of the period,
//!   at most 100 ms) is admitted for that moment, and the worker holds it until then;
//! - the others are handed back as scheduled, planned after the key's jobs already planned and
//!   due a horizon before their place, so that they neither run early nor poll, and a wake
//!   and a claim do not make the key's starts slip. The claiming process wakes at the earliest
//!   of them, and at the key's earliest deferred job of any process (a dead one's included)
//!   ([`Store::rate_limit_wake`]).
//!
//! The window is the period plus a guard of a twentieth of it, at most 50 ms, against clock
//! skew between hosts and the time between a claim and its handler's start. An admitted claim
//! must start within half the guard of its logged start: a worker that stalled past that
//! deadline takes the start back ([`Store::forget_rate_limit_starts`]) and releases the job.
//! A start is logged when it is claimed, so the starts of a process killed with `kill -9` keep
//! counting; a job handed back by the watchdog counts again when it starts again. Claims
//! without a key pay nothing: the claim statement returns the key column, and this runs only
//! if one has a key.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::concurrency;
use super::connection::DbConnection;
use super::dialect::{on_backend, Dialect};
use super::executions::keys_of;
use super::params::ID_CHUNK;
use super::schema::{
    solidq_claimed_executions as claimed, solidq_jobs as jobs, solidq_rate_limit_starts as starts,
    solidq_ready_executions as ready, solidq_scheduled_executions as scheduled,
};
use super::sql_types::at;
use super::{Store, StoreResult};
use crate::model::{ClaimedJob, JobId, RateLimit};

/// Jobs a rate-limit wake moves to ready per statement (the dispatcher's default batch).
const DISPATCH_BATCH: usize = 500;

/// The most planned wake times a store remembers (see [`Store::rate_limit_wake`]).
const MAX_WAKES: usize = 10_000;

/// How far ahead a claim may be admitted for a place that frees later: the worker holds it
/// until then. A tenth of the period, at most 100 ms.
pub(crate) fn hold_horizon(period: std::time::Duration) -> std::time::Duration {
    (period / 10).min(std::time::Duration::from_millis(100))
}

/// The guard added to a period: a twentieth of it, at most 50 ms.
pub(crate) fn window_guard(period: std::time::Duration) -> std::time::Duration {
    (period / 20).min(std::time::Duration::from_millis(50))
}

/// The wall clock if `now` is the wall clock's time give or take a minute (a live claim,
/// which may have waited for locks since it read the clock), else `now` as given (a test's
/// fixed clock).
fn live(now: NaiveDateTime) -> NaiveDateTime {
    let wall = chrono::Utc::now().naive_utc();
    if (wall - now).abs() < chrono::Duration::minutes(1) {
        wall.max(now)
    } else {
        now
    }
}

/// What admitting a claim's rate-limited jobs did.
#[derive(Debug, Default)]
pub(crate) struct Admitted {
    /// The claims to run: those without a key, and those the limits admitted.
    pub(crate) jobs: Vec<ClaimedJob>,
    /// When each deferred job is planned to be due again.
    pub(crate) planned: Vec<NaiveDateTime>,
    /// When the earliest job of these keys that any process deferred is due: this process
    /// wakes then too, so that a dead process's deferred jobs are not left to the
    /// dispatcher's next pass.
    pub(crate) others_due: Option<NaiveDateTime>,
}

/// Admits the rate-limited jobs among `claimed` (made at `now`) as their limits allow, in the
/// caller's transaction; the others' claims are deleted and they wait as scheduled at their
/// planned times.
pub(crate) fn admit_claims(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    claimed_jobs: Vec<ClaimedJob>,
    now: NaiveDateTime,
) -> QueryResult<Admitted> {
    let limited_ids: Vec<JobId> =
        claimed_jobs.iter().filter(|job| job.rate_limit_key.is_some()).map(|job| job.token.job_id).collect();
    if limited_ids.is_empty() {
        return Ok(Admitted { jobs: claimed_jobs, planned: Vec::new(), others_due: None });
    }
    // Each job's own limit; a key's claims are checked against the strictest among them.
    let mut limits: BTreeMap<JobId, (i32, i64)> = BTreeMap::new();
    for chunk in limited_ids.chunks(ID_CHUNK) {
        let rows: Vec<(JobId, Option<i32>, Option<i64>)> = jobs::table
            .filter(jobs::id.eq_any(chunk))
            .select((jobs::id, jobs::rate_limit, jobs::rate_period_ms))
            .load(conn)?;
        limits.extend(rows.into_iter().filter_map(|(id, limit, period)| Some((id, (limit?, period?)))));
    }
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, job) in claimed_jobs.iter().enumerate() {
        if let Some(key) = &job.rate_limit_key {
            if limits.contains_key(&job.token.job_id) {
                by_key.entry(key.clone()).or_default().push(index);
            }
        }
    }
    let mut deferred: BTreeMap<usize, NaiveDateTime> = BTreeMap::new();
    let mut others_due: Option<NaiveDateTime> = None;
    // The starts to log, per key: written last, at the time the transaction is about to end,
    // so that the time logged is as close as it can be to the handlers' starts.
    // (key, job, its start if ahead of now, the time its handler has to start in)
    let mut pending: Vec<(String, JobId, Option<NaiveDateTime>, chrono::Duration)> = Vec::new();
    for (key, indexes) in &by_key {
        // Keys in sorted order: two claims lock them in the same order.
        dialect.lock_key(conn, &format!("rate:{key}"))?;
        // The time the lock was had, not the time the claim began: a claim that waited for the
        // database would otherwise log its starts too early.
        let now = live(now);
        let ids: Vec<JobId> = indexes.iter().map(|&i| claimed_jobs[i].token.job_id).collect();
        let limit = ids.iter().filter_map(|id| limits.get(id)).map(|(limit, _)| *limit).min().unwrap_or(1).max(1);
        let period_ms = ids.iter().filter_map(|id| limits.get(id)).map(|(_, period)| *period).max().unwrap_or(1);
        let period = std::time::Duration::from_millis(u64::try_from(period_ms).unwrap_or(1).max(1));
        let window = chrono::Duration::from_std(period + window_guard(period)).unwrap_or(chrono::Duration::MAX);
        let since = now.checked_sub_signed(window).unwrap_or(crate::model::earliest_time());
        // The starts that left the window count no more.
        diesel::delete(starts::table.filter(starts::rate_limit_key.eq(key)).filter(starts::started_at.le(at(since))))
            .execute(conn)?;
        let in_window: i64 = starts::table
            .filter(starts::rate_limit_key.eq(key))
            .filter(starts::started_at.gt(at(since)))
            .count()
            .get_result(conn)?;
        let limit = i64::from(limit);
        let free = usize::try_from((limit - in_window).max(0)).unwrap_or(0).min(ids.len());
        // Half the guard for the handler to start in; the other half covers the time from
        // that check to the handler's first line.
        let start_within = chrono::Duration::from_std(window_guard(period) / 2).unwrap_or_default();
        let horizon = chrono::Duration::from_std(hold_horizon(period)).unwrap_or_default();
        pending.extend(ids[..free].iter().map(|&id| (key.clone(), id, None, start_within)));
        if free == ids.len() {
            continue;
        }
        // The starts counted in the window (those held for a place ahead included), and the
        // ones just admitted.
        let mut counted: Vec<NaiveDateTime> = starts::table
            .filter(starts::rate_limit_key.eq(key))
            .filter(starts::started_at.gt(at(since)))
            .order(starts::started_at)
            .select(starts::started_at)
            .load(conn)?;
        counted.extend(std::iter::repeat_n(now, free));
        counted.sort_unstable();
        // The jobs of the key already planned, at the places they were planned for: they come
        // back a horizon before (see below).
        // (`finished_at IS NULL`: what the key's partial index covers.)
        let planned: Vec<NaiveDateTime> = scheduled::table
            .inner_join(jobs::table)
            .filter(jobs::rate_limit_key.eq(key))
            .filter(jobs::finished_at.is_null())
            .select(scheduled::scheduled_at)
            .load(conn)?;
        others_due = others_due.into_iter().chain(planned.iter().copied()).min();
        let mut times = counted.clone();
        times.extend(planned.into_iter().map(|due| due + horizon));
        times.sort_unstable();
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let earliest = now + chrono::Duration::milliseconds(1);
        // When the place of the `limit`-th latest of `times` frees.
        let place_in = |times: &[NaiveDateTime]| {
            let leaves = times.len().checked_sub(limit).and_then(|i| times.get(i)).map(|t| *t + window);
            leaves.unwrap_or(earliest).max(earliest)
        };
        let insert = |times: &mut Vec<NaiveDateTime>, at: NaiveDateTime| {
            let index = times.partition_point(|t| *t <= at);
            times.insert(index, at);
        };
        for &index in &indexes[free..] {
            // A place that frees within the horizon, counting only starts: admitted for then
            // and held by the worker (a job planned earlier, come back a horizon early, takes
            // the place it was planned for).
            let place = place_in(&counted);
            if place <= now + horizon {
                pending.push((key.clone(), claimed_jobs[index].token.job_id, Some(place), start_within));
                insert(&mut counted, place);
                insert(&mut times, place);
                continue;
            }
            // Else planned after the jobs of the key already planned, and due a horizon before
            // its place: claimed again by then and held for it, so the key's starts do not slip
            // by the time a wake and a claim take.
            let plan = place_in(&times);
            insert(&mut times, plan);
            deferred.insert(index, (plan - horizon).max(earliest));
        }
    }
    if deferred.is_empty() {
        let mut jobs = claimed_jobs;
        log_starts(conn, &pending, live(now), &mut jobs)?;
        return Ok(Admitted { jobs, planned: Vec::new(), others_due });
    }
    let claim_ids: Vec<i64> = deferred.keys().map(|&i| claimed_jobs[i].token.claim_id).collect();
    for chunk in claim_ids.chunks(ID_CHUNK) {
        diesel::delete(claimed::table.filter(claimed::id.eq_any(chunk))).execute(conn)?;
    }
    for (&index, &plan) in &deferred {
        let job = &claimed_jobs[index];
        diesel::update(jobs::table.find(job.token.job_id))
            .set((jobs::scheduled_at.eq(at(plan)), jobs::updated_at.eq(at(now))))
            .execute(conn)?;
        diesel::insert_into(scheduled::table)
            .values((
                scheduled::job_id.eq(job.token.job_id),
                scheduled::queue_name.eq(job.queue.as_str()),
                scheduled::priority.eq(job.priority),
                scheduled::scheduled_at.eq(at(plan)),
                scheduled::created_at.eq(at(now)),
            ))
            .execute(conn)?;
    }
    // A deferred job no longer holds its concurrency key: let the next one in.
    let deferred_ids: Vec<JobId> = deferred.keys().map(|&i| claimed_jobs[i].token.job_id).collect();
    let keys: BTreeSet<String> = keys_of(conn, &deferred_ids)?;
    if !keys.is_empty() {
        concurrency::release_keys(dialect, conn, &keys, now)?;
    }
    let mut claimed_jobs = claimed_jobs;
    log_starts(conn, &pending, live(now), &mut claimed_jobs)?;
    let planned: Vec<NaiveDateTime> = deferred.values().copied().collect();
    let jobs: Vec<ClaimedJob> = claimed_jobs
        .into_iter()
        .enumerate()
        .filter(|(index, _)| !deferred.contains_key(index))
        .map(|(_, job)| job)
        .collect();
    Ok(Admitted { jobs, planned, others_due })
}

/// Logs a start for each job of `pending` (at its own time if it has one, else at `now`) and
/// gives those jobs among `jobs` their start and the deadline their handlers must start by.
fn log_starts(
    conn: &mut DbConnection,
    pending: &[(String, JobId, Option<NaiveDateTime>, chrono::Duration)],
    now: NaiveDateTime,
    jobs: &mut [ClaimedJob],
) -> QueryResult<()> {
    let admitted: BTreeMap<JobId, (NaiveDateTime, chrono::Duration)> =
        pending.iter().map(|(_, id, start, within)| (*id, (start.unwrap_or(now), *within))).collect();
    for job in jobs.iter_mut() {
        if let Some((start, within)) = admitted.get(&job.token.job_id) {
            job.rate_limit_start = Some(*start);
            job.rate_limit_deadline = Some(*start + *within);
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = pending
        .iter()
        .map(|(key, id, start, _)| {
            (
                starts::rate_limit_key.eq(key.as_str()),
                starts::started_at.eq(at(start.unwrap_or(now))),
                starts::job_id.eq(*id),
            )
        })
        .collect();
    on_backend!(conn, |c| diesel::insert_into(starts::table).values(&rows).execute(c))?;
    Ok(())
}

impl Store {
    /// Forgets every start counted for rate limits, as if their windows had passed: for the
    /// test helpers' `drain_including_scheduled`, which treats every time as come.
    pub(crate) fn forget_all_rate_limit_starts(&self) -> StoreResult<()> {
        self.with_connection("forgetting rate-limit starts", |conn| {
            diesel::delete(starts::table).execute(conn)?;
            Ok(())
        })
    }

    /// Takes back the starts counted for `jobs` (claimed and admitted by their rate limits,
    /// but handed back unstarted: their process stalled past their deadline), so that they do
    /// not hold the window's places.
    pub fn forget_rate_limit_starts(&self, jobs: &[JobId]) -> StoreResult<()> {
        self.with_connection("taking back rate-limit starts", |conn| {
            for &job in jobs {
                // Its latest start only: an earlier attempt's start in the window did happen.
                let latest: Option<NaiveDateTime> = starts::table
                    .filter(starts::job_id.eq(job))
                    .select(diesel::dsl::max(starts::started_at))
                    .first(conn)?;
                if let Some(latest) = latest {
                    diesel::delete(
                        starts::table.filter(starts::job_id.eq(job)).filter(starts::started_at.eq(at(latest))),
                    )
                    .execute(conn)?;
                }
            }
            Ok(())
        })
    }

    /// The earliest time a job this store deferred for its rate limit is planned to be due
    /// again, if any is pending: a worker wakes then and dispatches it
    /// ([`Store::dispatch_rate_limited`]) instead of waiting for the dispatcher's next pass.
    pub fn rate_limit_wake(&self) -> Option<NaiveDateTime> {
        self.rate_wakes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).first().copied()
    }

    /// Forgets the planned times up to `now`, moves the scheduled jobs due at `now` to ready
    /// (as the dispatcher does) and remembers when the next rate-limited job of any process is
    /// planned; returns how many were moved.
    pub fn dispatch_rate_limited(&self, now: NaiveDateTime) -> StoreResult<usize> {
        {
            let mut wakes = self.rate_wakes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let later = wakes.split_off(&(now + chrono::Duration::nanoseconds(1)));
            *wakes = later;
        }
        let moved = self.dispatch_due(now, DISPATCH_BATCH)?;
        // The next planned job of any process, so that the jobs a process deferred before it
        // died start on time too.
        let next = self.with_connection("looking for the next rate-limited job", |conn| {
            // From the live keyed jobs (the key's partial index), not from every scheduled job
            // (a table of future reminders): written as IN so that SQLite's planner starts there.
            let live_keyed = jobs::table
                .filter(jobs::rate_limit_key.is_not_null())
                .filter(jobs::finished_at.is_null())
                .select(jobs::id);
            scheduled::table
                .filter(scheduled::job_id.eq_any(live_keyed))
                .filter(scheduled::scheduled_at.gt(at(now)))
                .select(diesel::dsl::min(scheduled::scheduled_at))
                .first::<Option<NaiveDateTime>>(conn)
        })?;
        if let Some(next) = next {
            self.plan_rate_wakes(&[next]);
        }
        Ok(moved)
    }

    /// Remembers `planned` wake times (bounded: the latest are dropped past [`MAX_WAKES`]; the
    /// dispatcher's passes still find those jobs).
    pub(crate) fn plan_rate_wakes(&self, planned: &[NaiveDateTime]) {
        if planned.is_empty() {
            return;
        }
        let mut wakes = self.rate_wakes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        wakes.extend(planned.iter().copied());
        while wakes.len() > MAX_WAKES {
            wakes.pop_last();
        }
    }
}

/// Keys the rate-limit view lists at most.
pub const RATE_LIMIT_KEYS_SHOWN: usize = 500;

/// A rate-limit key as an operator sees it (`solidq rate-limits`, the dashboard's Queues page):
/// how much of its window is used and where its jobs are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RateLimitUsage {
    /// The key jobs share the limit by.
    pub key: String,
    /// The limit: the strictest among the key's jobs not ended, else that of the job of its
    /// latest start; `None` if neither is left (written as `KEY:N/PERIOD`).
    pub limit: Option<RateLimit>,
    /// Starts counted in the window now (the period plus its guard): the next claim admits
    /// `limit − in_window` jobs at once.
    pub in_window: i64,
    /// When the latest start was counted.
    pub last_start: Option<NaiveDateTime>,
    /// Jobs of the key ready to be claimed.
    pub ready: i64,
    /// Jobs of the key scheduled: deferred by the limit to the time their place frees (or
    /// enqueued for later).
    pub scheduled: i64,
    /// Jobs of the key claimed (running, or held for their place in the window).
    pub running: i64,
    /// When the key's next scheduled job is due.
    pub next_due: Option<NaiveDateTime>,
}

impl Store {
    /// Every rate-limit key with jobs not ended or starts still logged (at most
    /// [`RATE_LIMIT_KEYS_SHOWN`], by key): its limit, the starts in its window at `now`, and
    /// its jobs by state.
    pub fn rate_limit_usage(&self, now: NaiveDateTime) -> StoreResult<Vec<RateLimitUsage>> {
        use diesel::dsl::{count_star, max, min};
        self.with_connection("reading rate limits", |conn| {
            let mut usage: BTreeMap<String, RateLimitUsage> = BTreeMap::new();
            // The keys' jobs not ended (the key's partial index) and their strictest limit.
            let live: Vec<(Option<String>, Option<i32>, Option<i64>)> = jobs::table
                .filter(jobs::rate_limit_key.is_not_null())
                .filter(jobs::finished_at.is_null())
                .group_by(jobs::rate_limit_key)
                .select((jobs::rate_limit_key, min(jobs::rate_limit), max(jobs::rate_period_ms)))
                .load(conn)?;
            for (key, limit, period) in live {
                let Some(key) = key else { continue };
                let limit = RateLimit::from_columns(Some(key.clone()), limit, period);
                usage.entry(key.clone()).or_insert_with(|| RateLimitUsage::empty(key)).limit = limit;
            }
            let logged: Vec<(String, Option<NaiveDateTime>)> = starts::table
                .group_by(starts::rate_limit_key)
                .select((starts::rate_limit_key, max(starts::started_at)))
                .load(conn)?;
            for (key, last) in logged {
                usage.entry(key.clone()).or_insert_with(|| RateLimitUsage::empty(key)).last_start = last;
            }
            while usage.len() > RATE_LIMIT_KEYS_SHOWN {
                usage.pop_last();
            }
            macro_rules! by_state {
                ($table:ident) => {
                    $table::table
                        .inner_join(jobs::table)
                        .filter(jobs::rate_limit_key.is_not_null())
                        .filter(jobs::finished_at.is_null())
                        .group_by(jobs::rate_limit_key)
                        .select((jobs::rate_limit_key, count_star()))
                        .load::<(Option<String>, i64)>(conn)?
                };
            }
            for (key, count) in by_state!(ready) {
                if let Some(usage) = key.and_then(|key| usage.get_mut(&key)) {
                    usage.ready = count;
                }
            }
            for (key, count) in by_state!(claimed) {
                if let Some(usage) = key.and_then(|key| usage.get_mut(&key)) {
                    usage.running = count;
                }
            }
            let planned: Vec<(Option<String>, i64, Option<NaiveDateTime>)> = scheduled::table
                .inner_join(jobs::table)
                .filter(jobs::rate_limit_key.is_not_null())
                .filter(jobs::finished_at.is_null())
                .group_by(jobs::rate_limit_key)
                .select((jobs::rate_limit_key, count_star(), min(scheduled::scheduled_at)))
                .load(conn)?;
            for (key, count, next) in planned {
                if let Some(usage) = key.and_then(|key| usage.get_mut(&key)) {
                    usage.scheduled = count;
                    usage.next_due = next;
                }
            }
            for usage in usage.values_mut() {
                if usage.limit.is_none() && usage.last_start.is_some() {
                    // No job of the key is left but the starts: the limit of the latest's job.
                    let job: Option<JobId> = starts::table
                        .filter(starts::rate_limit_key.eq(&usage.key))
                        .order(starts::started_at.desc())
                        .select(starts::job_id)
                        .first(conn)
                        .optional()?;
                    if let Some(job) = job {
                        let columns: Option<(Option<i32>, Option<i64>)> = jobs::table
                            .find(job)
                            .select((jobs::rate_limit, jobs::rate_period_ms))
                            .first(conn)
                            .optional()?;
                        usage.limit = columns.and_then(|(limit, period)| {
                            RateLimit::from_columns(Some(usage.key.clone()), limit, period)
                        });
                    }
                }
                let Some(limit) = &usage.limit else { continue };
                let window = chrono::Duration::from_std(limit.period() + window_guard(limit.period()))
                    .unwrap_or(chrono::Duration::MAX);
                let since = now.checked_sub_signed(window).unwrap_or(crate::model::earliest_time());
                usage.in_window = starts::table
                    .filter(starts::rate_limit_key.eq(&usage.key))
                    .filter(starts::started_at.gt(at(since)))
                    .count()
                    .get_result(conn)?;
            }
            Ok(usage.into_values().collect())
        })
    }
}

impl RateLimitUsage {
    fn empty(key: String) -> RateLimitUsage {
        RateLimitUsage {
            key,
            limit: None,
            in_window: 0,
            last_start: None,
            ready: 0,
            scheduled: 0,
            running: 0,
            next_due: None,
        }
    }
}
