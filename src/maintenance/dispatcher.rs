//! Dispatcher: moves due scheduled jobs (and retries whose backoff has passed) to ready, in
//! batches, tidies the queue tables after many claims ([`Store::tidy`]), sweeps blocked jobs
//! every [`RELEASE_BLOCKED_EVERY`] passes, and deletes ended jobs older than
//! `SOLIDQ_CLEAR_FINISHED_AFTER` in batches.
//!
//! Where the store sees every change to the database (SQLite, see `store::changes`), a pass
//! that found nothing due remembers when the earliest scheduled job is due, and later passes
//! do not look again before then while nothing was written (at least every
//! [`LOOK_AT_LEAST_EVERY`]): an idle process reads nothing.

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use slog::{debug, info, Logger};

use super::{Pass, Service};
use crate::store::changes::ChangeMark;
use crate::store::{Dispatched, Store, StoreResult};

/// Default jobs moved per statement (`SOLIDQ_DISPATCHER_BATCH_SIZE`).
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// Default time between passes (`SOLIDQ_DISPATCHER_POLLING_INTERVAL`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default most batches per pass, so that one pass never holds the writer for long.
pub const DEFAULT_MAX_BATCHES_PER_PASS: usize = 20;

/// How the dispatcher works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Jobs moved per transaction.
    pub batch_size: usize,
    /// Time between passes.
    pub interval: Duration,
    /// A pass stops after this many full batches; the next pass goes on.
    pub max_batches_per_pass: usize,
    /// How long ended jobs are kept before the dispatcher deletes them (`None`: never; zero:
    /// on the next pass), from `SOLIDQ_PRESERVE_FINISHED_JOBS` and
    /// `SOLIDQ_CLEAR_FINISHED_AFTER`.
    pub clear_finished_after: Option<Duration>,
}

/// Every this many passes, the dispatcher lets in blocked jobs whose concurrency keys have
/// room ([`Store::release_blocked`]): the safety net for a release cut short by a crash, and
/// for holders past their duration.
pub const RELEASE_BLOCKED_EVERY: u64 = 10;
/// At most every this many passes (about a minute at the default interval), the dispatcher
/// clears ended jobs older than `clear_finished_after`; more often when that is shorter (every
/// pass when it is zero or shorter than the interval).
pub const CLEAR_FINISHED_EVERY: u64 = 60;
/// Ended jobs deleted per transaction, so a clear never holds locks for long.
pub const CLEAR_FINISHED_BATCH: usize = 1_000;
/// Longest time the dispatcher goes without looking for due jobs while the database seems
/// unchanged: a safety net under the change counts.
pub const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            batch_size: DEFAULT_BATCH_SIZE,
            interval: DEFAULT_INTERVAL,
            max_batches_per_pass: DEFAULT_MAX_BATCHES_PER_PASS,
            clear_finished_after: Some(crate::config::DEFAULT_CLEAR_FINISHED_AFTER),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchOutcome {
    /// Jobs made ready.
    pub moved: usize,
    /// Transactions it took.
    pub batches: usize,
    /// Whether the pass tidied the queue tables (see [`Store::tidy`]).
    pub tidied: bool,
    /// Blocked jobs let in by the sweep.
    pub released: usize,
    /// Ended jobs deleted.
    pub cleared: usize,
}

/// The dispatcher service.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    config: DispatcherConfig,
    /// Passes run so far.
    passes: u64,
    /// What the last look found when nothing was due, while the store can tell changes.
    quiet: Option<QuietLook>,
}

/// A look that found nothing due: the database as it was then, and when the earliest
/// scheduled job is due.
#[derive(Debug, Clone, Copy)]
struct QuietLook {
    mark: ChangeMark,
    next: Option<NaiveDateTime>,
    at: Instant,
}

impl Dispatcher {
    /// A dispatcher with `config` (a batch size of 0 counts as 1).
    pub fn new(mut config: DispatcherConfig) -> Self {
        config.batch_size = config.batch_size.max(1);
        config.max_batches_per_pass = config.max_batches_per_pass.max(1);
        Dispatcher { config, passes: 0, quiet: None }
    }

    /// Whether the last look still tells: nothing written since, the earliest job not yet
    /// due, and the look recent enough.
    fn nothing_due(&self, mark: Option<ChangeMark>, pass: &Pass) -> bool {
        match (self.quiet, mark) {
            (Some(quiet), Some(mark)) => {
                quiet.mark == mark
                    && quiet.next.is_none_or(|next| pass.now < next)
                    && pass.clock.saturating_duration_since(quiet.at) < LOOK_AT_LEAST_EVERY
            }
            _ => false,
        }
    }

    /// Moves due jobs batch by batch (one transaction each) until a batch comes back short.
    fn dispatch(&mut self, store: &Store, pass: &Pass, outcome: &mut DispatchOutcome) -> StoreResult<()> {
        // Taken before the look: a write the look misses changes the mark.
        let mark = store.change_mark().map(|(mark, _)| mark);
        if self.nothing_due(mark, pass) {
            return Ok(());
        }
        self.quiet = None;
        while outcome.batches < self.config.max_batches_per_pass {
            match store.dispatch_due_or_next(pass.now, self.config.batch_size)? {
                Dispatched::NothingDue { next } => {
                    self.quiet = mark.map(|mark| QuietLook { mark, next, at: pass.clock });
                    break;
                }
                Dispatched::Moved(moved) => {
                    outcome.batches += 1;
                    outcome.moved += moved;
                    if moved < self.config.batch_size {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Service for Dispatcher {
    type Outcome = DispatchOutcome;
    const NAME: &'static str = "dispatcher";

    fn interval(&self) -> Duration {
        self.config.interval
    }

    /// Dispatches due jobs, then tidies, sweeps blocked jobs and clears ended ones when their
    /// turn comes.
    fn run_once(&mut self, store: &Store, pass: Pass) -> StoreResult<DispatchOutcome> {
        let mut outcome = DispatchOutcome::default();
        self.dispatch(store, &pass, &mut outcome)?;
        outcome.tidied = store.tidy()?;
        self.passes += 1;
        if self.passes % RELEASE_BLOCKED_EVERY == 1 {
            outcome.released = store.release_blocked(pass.now)?;
        }
        if let Some(keep) = self.config.clear_finished_after {
            let every =
                (keep.as_millis() / self.config.interval.as_millis().max(1)).clamp(1, u128::from(CLEAR_FINISHED_EVERY));
            if (self.passes - 1).is_multiple_of(every as u64) {
                let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
                let before = pass.now.checked_sub_signed(keep).unwrap_or(chrono::NaiveDateTime::MIN);
                for _ in 0..self.config.max_batches_per_pass {
                    let cleared = store.clear_finished(before, CLEAR_FINISHED_BATCH)?;
                    outcome.cleared += cleared;
                    if cleared < CLEAR_FINISHED_BATCH {
                        break;
                    }
                }
            }
        }
        Ok(outcome)
    }

    fn report(outcome: &DispatchOutcome, logger: &Logger) {
        if outcome.moved > 0 {
            debug!(logger, "scheduled jobs dispatched"; "moved" => outcome.moved, "batches" => outcome.batches);
        }
        if outcome.tidied {
            debug!(logger, "queue tables tidied");
        }
        if outcome.released > 0 {
            info!(logger, "blocked jobs released by the sweep"; "released" => outcome.released);
        }
        if outcome.cleared > 0 {
            info!(logger, "ended jobs cleared"; "deleted" => outcome.cleared);
        }
    }
}
