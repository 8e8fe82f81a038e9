//! Jobs: enqueue ([`enqueue`]), claim, and the transitions of claimed jobs.
//!
//! Every transition takes a batch of claim tokens and runs in one transaction: the claims that
//! still exist are deleted first (the deletion decides, see `Dialect::take_claims`), the
//! jobs behind them change (`transitions.rs`), and the tokens whose claims were gone are
//! reported as fenced (their process was found dead and the job handed back, perhaps claimed
//! elsewhere): nothing changed for those.

use std::collections::{BTreeSet, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::composition::{self, Ending};
use super::concurrency;
use super::connection::DbConnection;
use super::dialect::{Dialect, HotPath};
use super::executions::mark_finished;
use super::params::{Claim, CompletedClaims};
use super::rate_limits::{self, Admitted};
use super::schema::solidq_ready_executions as ready;
use super::{Store, StoreResult};
use crate::lifecycle::Transition;
use crate::model::{ClaimToken, ClaimedJob, FailureRecord, JobId, ProcessId, QueuePattern};

pub mod enqueue;
pub(crate) mod transitions;

pub use enqueue::EnqueueConnection;
use transitions::apply;

/// Takes the claims of `tokens` that still exist and finishes their jobs, with what their
/// ends mean for their batches and the jobs waiting for them, in the caller's transaction.
fn finish_in_transaction(
    dialect: &dyn Dialect,
    conn: &mut DbConnection,
    tokens: &[ClaimToken],
    now: NaiveDateTime,
) -> diesel::QueryResult<CompletedClaims> {
    let taken = dialect.take_claims(conn, tokens)?;
    let ids: Vec<JobId> = taken.iter().map(|token| token.job_id).collect();
    let keys = mark_finished(conn, &ids, now)?;
    let ended: Vec<(JobId, Ending)> = ids.iter().map(|id| (*id, Ending::Succeeded)).collect();
    composition::jobs_ended(dialect, conn, &ended, now)?;
    Ok(CompletedClaims { keys, taken, composing: Vec::new() })
}

/// Which claims of a batch a transition changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Settled {
    /// Claims that were still this process's: their jobs changed.
    pub applied: Vec<ClaimToken>,
    /// Claims that were gone (reaped, released): nothing changed for them.
    pub fenced: Vec<ClaimToken>,
}

impl Settled {
    /// Whether `token` was applied.
    pub fn applied(&self, token: &ClaimToken) -> bool {
        self.applied.contains(token)
    }
}

impl Store {
    /// Claims up to `limit` ready jobs of the given `kinds` (those the process has handlers
    /// for) for `process`, taking queues in the order of `queues`, then priority, then job id,
    /// and counts each claimed job's attempt. Claims nothing if the process row does not exist.
    /// A job of another kind stays ready for a process that can run it.
    pub fn claim(
        &self,
        process: ProcessId,
        queues: &[QueuePattern],
        kinds: &[String],
        limit: usize,
        now: NaiveDateTime,
    ) -> StoreResult<Vec<ClaimedJob>> {
        if limit == 0 || queues.is_empty() || kinds.is_empty() {
            return Ok(Vec::new());
        }
        let claim = Claim { process, queues, kinds, limit, now };
        let transaction = !self.dialect().one_statement(HotPath::Claim(&claim));
        if transaction && self.last_claim_empty.load(std::sync::atomic::Ordering::Relaxed) {
            // After an empty claim, one read before a write transaction (on SQLite, the file's
            // write lock): an idle worker's poll then takes no lock from the other processes on
            // the file. Busy workers (whose last claim found jobs) skip it.
            let any_ready = self.with_connection("looking for ready jobs", |conn| {
                diesel::select(diesel::dsl::exists(ready::table.filter(ready::class_name.eq_any(kinds))))
                    .get_result::<bool>(conn)
            })?;
            if !any_ready {
                return Ok(Vec::new());
            }
        }
        let limited = |jobs: &[ClaimedJob]| jobs.iter().any(|job| job.rate_limit_key.is_some());
        let admitted = self.write_unmarked("claiming jobs", transaction, |conn| {
            let claimed = self.dialect().claim(conn, &claim)?;
            if transaction && limited(&claimed) {
                return rate_limits::admit_claims(self.dialect(), conn, claimed, now);
            }
            Ok(Admitted { jobs: claimed, planned: Vec::new(), others_due: None })
        })?;
        self.last_claim_empty.store(admitted.jobs.is_empty(), std::sync::atomic::Ordering::Relaxed);
        // A one-statement claim committed already: its rate-limited jobs go through their
        // limits in a transaction of their own (a crash in between leaves plain claims, which
        // the watchdog hands back).
        let admitted = if !transaction && limited(&admitted.jobs) {
            self.write("admitting rate-limited claims", |conn| {
                rate_limits::admit_claims(self.dialect(), conn, admitted.jobs.clone(), now)
            })?
        } else {
            admitted
        };
        if !admitted.planned.is_empty() {
            self.changes.wrote();
            self.plan_rate_wakes(&admitted.planned);
        }
        if let Some(due) = admitted.others_due {
            self.plan_rate_wakes(&[due]);
        }
        let claimed = admitted.jobs;
        self.count_claimed(claimed.len());
        Ok(claimed)
    }

    /// Writes each claim's transition, in one transaction, for the claims that are still
    /// this process's.
    pub fn record(&self, batch: &[(ClaimToken, Transition)], now: NaiveDateTime) -> StoreResult<Settled> {
        if batch.is_empty() {
            return Ok(Settled::default());
        }
        // Completions, the common case, go through the dialect's one-statement path; the other
        // transitions take their claims and change their jobs beside them.
        let (complete, other): (Vec<_>, Vec<_>) =
            batch.iter().partition(|(_, transition)| matches!(transition, Transition::Complete));
        let complete: Vec<ClaimToken> = complete.iter().map(|(token, _)| *token).collect();
        let other: Vec<ClaimToken> = other.iter().map(|(token, _)| *token).collect();
        let transaction = !other.is_empty() || !self.dialect().one_statement(HotPath::Complete);
        let (settled, finished_keys, settle_later) = self.write_as("recording job outcomes", transaction, |conn| {
            let mut taken: HashSet<ClaimToken> = HashSet::with_capacity(batch.len());
            let mut finished_keys = BTreeSet::new();
            let mut settle_later = Vec::new();
            if !complete.is_empty() {
                let finished = match self.dialect().complete_claims(conn, &complete, now)? {
                    Some(finished) => finished,
                    None => finish_in_transaction(self.dialect(), conn, &complete, now)?,
                };
                taken.extend(finished.taken);
                finished_keys = finished.keys;
                settle_later = finished.composing;
            }
            if !other.is_empty() {
                taken.extend(self.dialect().take_claims(conn, &other)?);
            }
            let mut settled = Settled::default();
            let mut transitions = Vec::with_capacity(taken.len());
            for (token, transition) in batch {
                if taken.contains(token) {
                    settled.applied.push(*token);
                    if !matches!(transition, Transition::Complete) {
                        transitions.push((token.job_id, transition));
                    }
                } else {
                    settled.fenced.push(*token);
                }
            }
            apply(self.dialect(), conn, &transitions, now)?;
            if transaction {
                concurrency::release_keys(self.dialect(), conn, &finished_keys, now)?;
                finished_keys.clear();
            }
            Ok((settled, finished_keys, settle_later))
        })?;
        // Claims the one-statement completion left (batch members, jobs with dependants) finish
        // in a transaction that counts what their ends mean; elsewhere a claim not taken was gone.
        let left: Vec<ClaimToken> = if self.dialect().one_statement(HotPath::Complete) {
            complete.iter().filter(|t| !settled.applied(t)).copied().collect()
        } else {
            Vec::new()
        };
        let settled = if left.is_empty() { settled } else { self.finish_left(settled, &left, now)? };
        // A job that got a dependant while the one-statement completion ran: resolve its
        // dependants now (the dispatcher's sweep does it after a crash in between).
        if !settle_later.is_empty() {
            self.write("resolving the jobs waiting for finished jobs", |conn| {
                let ended: Vec<(JobId, Ending)> = settle_later.iter().map(|id| (*id, Ending::Succeeded)).collect();
                composition::jobs_ended(self.dialect(), conn, &ended, now)
            })?;
            self.jobs_ready();
        }
        // Finished jobs held concurrency keys: let the next blocked jobs in (the finish was one
        // statement outside a transaction; a crash in between is caught by the dispatcher's
        // sweep of blocked keys).
        if !finished_keys.is_empty() {
            self.write("releasing concurrency keys", |conn| {
                concurrency::release_keys(self.dialect(), conn, &finished_keys, now)
            })?;
            self.jobs_ready();
        }
        // A release or an immediate retry made a job ready again.
        if !other.is_empty() && settled.applied.len() > complete.len() {
            self.jobs_ready();
        }
        Ok(settled)
    }

    /// Finishes, in one transaction, the claims of `left` that the one-statement completion
    /// left to it (batch members, jobs with dependants), and moves them from `settled.fenced`
    /// to `settled.applied`.
    fn finish_left(&self, mut settled: Settled, left: &[ClaimToken], now: NaiveDateTime) -> StoreResult<Settled> {
        let finished = self.write("recording job outcomes", |conn| {
            let finished = finish_in_transaction(self.dialect(), conn, left, now)?;
            concurrency::release_keys(self.dialect(), conn, &finished.keys, now)?;
            Ok(finished)
        })?;
        let done: HashSet<ClaimToken> = finished.taken.into_iter().collect();
        settled.fenced.retain(|token| !done.contains(token));
        settled.applied.extend(left.iter().filter(|token| done.contains(token)));
        if !finished.keys.is_empty() {
            self.jobs_ready();
        }
        Ok(settled)
    }

    /// Marks the jobs of `tokens` finished.
    pub fn complete_claims(&self, tokens: &[ClaimToken], now: NaiveDateTime) -> StoreResult<Settled> {
        self.record(&tokens.iter().map(|token| (*token, Transition::Complete)).collect::<Vec<_>>(), now)
    }

    /// Records `error` as each job's last error and runs it again at `run_at` (ready at once
    /// if `run_at <= now`); the attempt stays counted.
    pub fn retry_claims(
        &self,
        tokens: &[ClaimToken],
        error: &FailureRecord,
        run_at: NaiveDateTime,
        now: NaiveDateTime,
    ) -> StoreResult<Settled> {
        let delay = (run_at - now).to_std().unwrap_or_default();
        let transition = Transition::Retry(error.clone(), delay);
        self.record(&tokens.iter().map(|token| (*token, transition.clone())).collect::<Vec<_>>(), now)
    }

    /// Moves the jobs to failed with `error`.
    pub fn fail_claims(
        &self,
        tokens: &[ClaimToken],
        error: &FailureRecord,
        now: NaiveDateTime,
    ) -> StoreResult<Settled> {
        let transition = Transition::Fail(error.clone());
        self.record(&tokens.iter().map(|token| (*token, transition.clone())).collect::<Vec<_>>(), now)
    }

    /// Returns the jobs to ready and gives back the attempt each claim counted: they were
    /// never started (a claim handed back unstarted, a handler that was not running), or a
    /// graceful drain cut their run short. Only a process death counts an attempt without an
    /// outcome.
    pub fn release_claims(&self, tokens: &[ClaimToken], now: NaiveDateTime) -> StoreResult<Settled> {
        self.record(&tokens.iter().map(|token| (*token, Transition::Release)).collect::<Vec<_>>(), now)
    }
}
