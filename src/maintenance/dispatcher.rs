//! Dispatcher: moves due scheduled jobs (and retries whose backoff has passed) to ready, in
//! batches, and tidies the queue tables after many claims ([`Store::tidy`]).

use std::time::Duration;

use slog::{debug, Logger};

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
    /// Whether the pass tidied the queue tables (see [`Store::tidy`]).
    pub tidied: bool,
}

/// The dispatcher service.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    config: DispatcherConfig,
}

impl Dispatcher {
    /// A dispatcher with `config` (a batch size of 0 counts as 1).
    pub fn new(mut config: DispatcherConfig) -> Self {
        config.batch_size = config.batch_size.max(1);
        config.max_batches_per_pass = config.max_batches_per_pass.max(1);
        Dispatcher { config }
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
        Ok(outcome)
    }

    fn report(outcome: &DispatchOutcome, logger: &Logger) {
        if outcome.moved > 0 {
            debug!(logger, "scheduled jobs dispatched"; "moved" => outcome.moved, "batches" => outcome.batches);
        }
        if outcome.tidied {
            debug!(logger, "queue tables tidied");
        }
    }
}
