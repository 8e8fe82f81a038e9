//! Blocked sweep: lets in the blocked jobs whose concurrency keys have room
//! ([`Store::release_blocked`]). A holder that ends lets the next blocked jobs in within its
//! own transaction; the sweep is the safety net for a release cut short by a crash between two
//! transactions, and for holders claimed longer ago than their limit's duration. One read when
//! nothing is blocked.

use std::time::Duration;

use slog::{info, Logger};

use super::{Pass, Service};
use crate::store::{Store, StoreResult};

/// Default time between sweeps.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The blocked sweep service.
#[derive(Debug, Clone)]
pub struct BlockedSweep {
    interval: Duration,
}

impl BlockedSweep {
    /// A sweep every `interval`.
    pub fn new(interval: Duration) -> Self {
        BlockedSweep { interval }
    }
}

impl Default for BlockedSweep {
    fn default() -> Self {
        BlockedSweep::new(DEFAULT_INTERVAL)
    }
}

impl Service for BlockedSweep {
    /// Blocked jobs let in.
    type Outcome = usize;
    const NAME: &'static str = "blocked-sweep";

    fn interval(&self) -> Duration {
        self.interval
    }

    fn run_once(&mut self, store: &Store, pass: Pass) -> StoreResult<usize> {
        store.release_blocked(pass.now)
    }

    fn report(released: &usize, logger: &Logger) {
        if *released > 0 {
            info!(logger, "blocked jobs released by the sweep"; "released" => released);
        }
    }
}
