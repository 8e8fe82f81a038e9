//! Dispatcher: moves due scheduled jobs (and retries whose backoff has passed) to ready, in
//! batches.
//!
//! Where the store sees every change to the database (SQLite, see `store::changes`), a pass
//! that found nothing due remembers when the earliest scheduled job is due, and later passes
//! do not look again before then while nothing was written (at least every
//! [`LOOK_AT_LEAST_EVERY`]): an idle process reads nothing.

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use slog::{debug, Logger};

use super::{Pass, Service};
use crate::store::changes::ChangeMark;
use crate::store::{Dispatched, Store, StoreResult};

/// Default jobs moved per statement (`SOLIDQ_DISPATCHER_BATCH_SIZE`).
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// Default time between passes (`SOLIDQ_DISPATCHER_POLLING_INTERVAL`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default most batches per pass, so that one pass never holds the writer for long.
pub const DEFAULT_MAX_BATCHES_PER_PASS: usize = 20;
/// Longest time the dispatcher goes without looking for due jobs while the database seems
/// unchanged: a safety net under the change counts.
pub const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

/// How the dispatcher works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Jobs moved per transaction.
    pub batch_size: usize,
    /// Time between passes.
    pub interval: Duration,
    /// A pass stops after this many full batches; the next pass goes on.
    pub max_batches_per_pass: usize,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            batch_size: DEFAULT_BATCH_SIZE,
            interval: DEFAULT_INTERVAL,
            max_batches_per_pass: DEFAULT_MAX_BATCHES_PER_PASS,
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
}

/// The dispatcher service.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    config: DispatcherConfig,
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
        Dispatcher { config, quiet: None }
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

    /// The batches of one pass, unless the last look still tells that nothing is due.
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

    /// Moves due jobs batch by batch (one transaction each) until a batch comes back short.
    fn run_once(&mut self, store: &Store, pass: Pass) -> StoreResult<DispatchOutcome> {
        let mut outcome = DispatchOutcome::default();
        self.dispatch(store, &pass, &mut outcome)?;
        Ok(outcome)
    }

    fn report(outcome: &DispatchOutcome, logger: &Logger) {
        if outcome.moved > 0 {
            debug!(logger, "scheduled jobs dispatched"; "moved" => outcome.moved, "batches" => outcome.batches);
        }
    }
}
