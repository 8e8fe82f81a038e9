//! Dispatcher: moves due scheduled jobs (and retries whose backoff has passed) to ready, in
//! batches, tidies the queue tables after many claims ([`Store::tidy`]), sweeps blocked jobs
//! every [`RELEASE_BLOCKED_EVERY`] passes, and deletes ended jobs older than
//! `SOLIDQ_CLEAR_FINISHED_AFTER` in batches.

use std::time::Duration;

use slog::{debug, info, Logger};

use super::{Pass, Service};
use crate::store::{Store, StoreResult};

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
}

impl Dispatcher {
    /// A dispatcher with `config` (a batch size of 0 counts as 1).
    pub fn new(mut config: DispatcherConfig) -> Self {
        config.batch_size = config.batch_size.max(1);
        config.max_batches_per_pass = config.max_batches_per_pass.max(1);
        Dispatcher { config, passes: 0 }
    }
}

impl Service for Dispatcher {
    type Outcome = DispatchOutcome;
    const NAME: &'static str = "dispatcher";

    fn interval(&self) -> Duration {
        self.config.interval
    }

    /// Moves due jobs batch by batch (one transaction each) until a batch comes back short.
    fn run_once(&mut self, store: &Store, pass: Pass) -> StoreResult<DispatchOutcome> {
        let mut outcome = DispatchOutcome::default();
        while outcome.batches < self.config.max_batches_per_pass {
            let moved = store.dispatch_due(pass.now, self.config.batch_size)?;
            outcome.batches += 1;
            outcome.moved += moved;
            if moved < self.config.batch_size {
                break;
            }
        }
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
