//! Maintenance: the store side of the periodic services. Each method is one transaction and
//! returns what it changed.

use std::collections::HashSet;
use std::time::Instant;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::concurrency;
use super::connection::DbConnection;
use super::dialect::{DeadProcess, Dialect};
use super::executions::{count_attempt, hand_back, insert_ready, keys_of};
use super::inspect::claims_of_on;
use super::jobs::transitions::apply;
use super::schema::{solidq_jobs as jobs, solidq_scheduled_executions as scheduled};
use super::{Store, StoreResult};
use crate::lifecycle::Transition;
use crate::model::{ClaimToken, DeathPolicy, FailureKind, FailureRecord, JobId, ProcessId};

/// Why a process is being reaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeathCause {
    /// Its heartbeat is older than `cutoff`. The store re-checks this in the same transaction
    /// and does nothing if the process beat meanwhile, or if the transaction only got its locks
    /// after `deadline`: a verdict that had to wait that long for the database was made blind
    /// (the database was locked or unreachable, so the process may not have been able to beat
    /// either).
    HeartbeatOlderThan {
        /// Heartbeats before this are too old.
        cutoff: NaiveDateTime,
        /// When the verdict expires (monotonic clock); `None`: never.
        deadline: Option<Instant>,
    },
    /// A liveness probe (session gone, pid gone) proved it dead: no heartbeat check.
    Proven(String),
}

impl DeathCause {
    /// Whether the verdict expired before the store could act on it.
    fn expired(&self) -> bool {
        matches!(self, DeathCause::HeartbeatOlderThan { deadline: Some(deadline), .. } if Instant::now() > *deadline)
    }

    fn cutoff(&self) -> Option<NaiveDateTime> {
        match self {
            DeathCause::HeartbeatOlderThan { cutoff, .. } => Some(*cutoff),
            DeathCause::Proven(_) => None,
        }
    }

    /// The failure recorded with the claims of `process`, reaped for this cause.
    fn record(&self, process: ProcessId, dead: &DeadProcess) -> FailureRecord {
        let cause = match self {
            DeathCause::HeartbeatOlderThan { cutoff, .. } => {
                format!("no heartbeat since {} (cutoff {})", dead.last_heartbeat_at, cutoff)
            }
            DeathCause::Proven(reason) => reason.clone(),
        };
        FailureRecord {
            kind: FailureKind::ProcessDied,
            message: format!(
                "process {} ({}) on host {} with pid {} died; last heartbeat at {} UTC",
                process, dead.name, dead.hostname, dead.pid, dead.last_heartbeat_at
            ),
            backtrace: None,
            cause: Some(cause),
        }
    }
}

/// One process removed by [`Store::reap_dead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReapedProcess {
    /// Its id.
    pub process: ProcessId,
    /// Its name.
    pub name: String,
    /// Its host.
    pub host: String,
    /// The jobs it held.
    pub jobs: Vec<JobId>,
    /// Its claims returned to ready.
    pub retried: usize,
    /// Its claims moved to failed.
    pub failed: usize,
}

/// What [`Store::dispatch_due_or_next`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatched {
    /// Jobs were due: up to a batch of them was taken, and this many made ready (the others
    /// wait behind their concurrency limit).
    Moved(usize),
    /// Nothing was due; the earliest scheduled job is due at `next` (none is scheduled:
    /// `None`).
    NothingDue {
        /// When the earliest scheduled job is due.
        next: Option<NaiveDateTime>,
    },
}

/// Scheduled jobs moved per transaction by [`Store::dispatch_now`].
const DISPATCH_NOW_BATCH: usize = 500;

/// Moves up to `batch` scheduled jobs due by `until` to ready (or blocked, through their
/// concurrency limits), in the caller's transaction; returns how many were taken and how many
/// were made ready.
fn move_due(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    until: NaiveDateTime,
    batch: usize,
    now: NaiveDateTime,
) -> QueryResult<(usize, usize)> {
    let due = dialect.take_due(conn, until, batch)?;
    let moved = insert_ready(conn, &due, now)?;
    let held_back = concurrency::admit(dialect, conn, &due, now)?;
    Ok((due.len(), moved - held_back))
}

impl Store {
    /// Moves up to `batch` scheduled jobs due at `now` to ready (retries whose backoff passed
    /// among them); returns how many.
    pub fn dispatch_due(&self, now: NaiveDateTime, batch: usize) -> StoreResult<usize> {
        Ok(match self.dispatch_due_or_next(now, batch)? {
            Dispatched::Moved(moved) => moved,
            Dispatched::NothingDue { .. } => 0,
        })
    }

    /// Moves every scheduled job to ready now, whatever its time (retries waiting for their
    /// backoff among them); returns how many were made ready (a job over its concurrency
    /// limit waits blocked). For tests ([`crate::testing`]): "run what is scheduled as if its
    /// time had come".
    pub fn dispatch_now(&self, now: NaiveDateTime) -> StoreResult<usize> {
        let mut total = 0;
        loop {
            let (taken, moved) = self.write("dispatching every scheduled job", |conn| {
                move_due(self.dialect(), conn, crate::model::latest_schedule(), DISPATCH_NOW_BATCH, now)
            })?;
            total += moved;
            if taken < DISPATCH_NOW_BATCH {
                break;
            }
        }
        if total > 0 {
            self.jobs_ready();
        }
        Ok(total)
    }

    /// [`Store::dispatch_due`], telling when nothing is due when the next job is: so a
    /// dispatcher that knows the database did not change since can wait until then.
    pub fn dispatch_due_or_next(&self, now: NaiveDateTime, batch: usize) -> StoreResult<Dispatched> {
        if batch == 0 {
            return Ok(Dispatched::Moved(0));
        }
        // One read statement on the idle path: no write transaction (on SQLite, no write lock)
        // unless something is due.
        let earliest = self.with_connection("looking for due jobs", |conn| {
            scheduled::table.select(diesel::dsl::min(scheduled::scheduled_at)).get_result::<Option<NaiveDateTime>>(conn)
        })?;
        if earliest.is_none_or(|at| at > now) {
            return Ok(Dispatched::NothingDue { next: earliest });
        }
        let (_, moved) =
            self.write("dispatching scheduled jobs", |conn| move_due(self.dialect(), conn, now, batch, now))?;
        if moved > 0 {
            self.jobs_ready();
        }
        Ok(Dispatched::Moved(moved))
    }

    /// Removes the processes judged dead and hands their claims back per `policy` (and as
    /// [`Transition::after_death`] decides: failed once a job reached its max attempts), in one
    /// transaction. A process whose verdict no longer holds (it beat meanwhile, or another
    /// watchdog reaped it first) is left alone; a verdict that expired makes the whole pass
    /// change nothing. Returns the processes this call removed.
    pub fn reap_dead(
        &self,
        verdicts: &[(ProcessId, DeathCause)],
        policy: DeathPolicy,
        now: NaiveDateTime,
    ) -> StoreResult<Vec<ReapedProcess>> {
        if verdicts.is_empty() {
            return Ok(Vec::new());
        }
        let reaped = self.write("reaping dead processes", |conn| {
            let mut reaped = Vec::new();
            for (process, cause) in verdicts {
                if cause.expired() {
                    return Err(diesel::result::Error::RollbackTransaction);
                }
                let Some(dead) = self.dialect().delete_process(conn, *process, cause.cutoff())? else { continue };
                // The row is ours now; a verdict that waited too long for it is void.
                if cause.expired() {
                    return Err(diesel::result::Error::RollbackTransaction);
                }
                let ids = self.dialect().take_claims_of(conn, *process)?;
                let attempts: Vec<(JobId, i32, i32)> = jobs::table
                    .filter(jobs::id.eq_any(&ids))
                    .select((jobs::id, jobs::attempts, jobs::max_attempts))
                    .load(conn)?;
                let error = cause.record(*process, &dead);
                let transitions: Vec<(JobId, Transition)> = attempts
                    .into_iter()
                    // The death counts the attempt its claim was (written by the transition).
                    .map(|(id, attempts, max)| (id, Transition::after_death(policy, attempts + 1, max, error.clone())))
                    .collect();
                let failed = transitions.iter().filter(|(_, t)| matches!(t, Transition::Fail(_))).count();
                apply(self.dialect(), conn, &transitions.iter().map(|(id, t)| (*id, t)).collect::<Vec<_>>(), now)?;
                reaped.push(ReapedProcess {
                    process: *process,
                    name: dead.name,
                    host: dead.hostname,
                    jobs: ids,
                    retried: transitions.len() - failed,
                    failed,
                });
            }
            Ok(reaped)
        });
        let reaped = match reaped {
            Err(super::StoreError::Query { source: diesel::result::Error::RollbackTransaction, .. }) => Vec::new(),
            other => other?,
        };
        for r in &reaped {
            self.dialect().resign(r.process);
        }
        if let Some(sessions) = self.dialect().sessions() {
            reaped.iter().for_each(|r| sessions.release(r.process));
        }
        if reaped.iter().any(|r| r.retried > 0) {
            self.jobs_ready();
        }
        Ok(reaped)
    }

    /// Lets in the blocked jobs that every concurrency key with blocked jobs allows now (a
    /// holder ended in a transaction that could not release them, or a holder ran past its
    /// duration); returns how many were made ready. The dispatcher runs it now and then.
    pub fn release_blocked(&self, now: NaiveDateTime) -> StoreResult<usize> {
        // One statement when nothing is blocked, as on most passes.
        if self.with_connection("listing blocked keys", concurrency::blocked_keys)?.is_empty() {
            return Ok(0);
        }
        let released = self.write("releasing blocked jobs", |conn| {
            let keys = concurrency::blocked_keys(conn)?;
            concurrency::release_keys(self.dialect(), conn, &keys, now)
        })?;
        if released > 0 {
            self.jobs_ready();
        }
        Ok(released)
    }

    /// Returns claims whose process row is missing to ready (their attempts stay counted, as
    /// for a death); returns how many.
    pub fn release_orphans(&self, now: NaiveDateTime) -> StoreResult<usize> {
        // Claims and ready rows only: nothing the dispatcher or the watchdog reads.
        let released = self.write_unmarked("releasing orphaned claims", true, |conn| {
            let ids = self.dialect().take_orphan_claims(conn)?;
            count_attempt(conn, &ids, now)?;
            let released = insert_ready(conn, &ids, now)?;
            // Claims older than their duration did not count; as ready jobs they do again.
            let keys = keys_of(conn, &ids)?;
            concurrency::release_keys(self.dialect(), conn, &keys, now)?;
            Ok(released)
        })?;
        if released > 0 {
            self.jobs_ready();
        }
        Ok(released)
    }

    /// Returns to ready, without counting their attempts, the claims of live `process` that
    /// its claim book does not know: claims whose COMMIT reached the server while the reply
    /// was lost. `unknown` sees the claims the process holds and the book does not know, and
    /// returns those to release, or `None` to change nothing (a claim of the process was
    /// under way meanwhile, whose jobs would look unknown). Returns how many were released.
    pub fn settle_lost_claims(
        &self,
        process: ProcessId,
        now: NaiveDateTime,
        mut unknown: impl FnMut(Vec<ClaimToken>) -> Option<Vec<ClaimToken>>,
    ) -> StoreResult<Option<usize>> {
        self.write("settling lost claims", |conn| {
            let held = claims_of_on(conn, process)?;
            let Some(lost) = unknown(held) else { return Ok(None) };
            if lost.is_empty() {
                return Ok(Some(0));
            }
            let taken: HashSet<ClaimToken> = self.dialect().take_claims(conn, &lost)?.into_iter().collect();
            let ids: Vec<JobId> = taken.iter().map(|token| token.job_id).collect();
            hand_back(conn, &ids, now)?;
            Ok(Some(ids.len()))
        })
    }
}
