//! Cleaner: deletes ended jobs (finished, discarded, cancelled) once they are older than
//! `SOLIDQ_CLEAR_FINISHED_AFTER`, [`CLEAR_BATCH`] per transaction so that a clear never holds
//! locks for long. Failed jobs stay until retried or discarded.

use std::time::Duration;

use slog::{info, Logger};

use super::{Pass, Service};
use crate::store::{Store, StoreResult};

/// Default `SOLIDQ_CLEAR_FINISHED_AFTER`: ended jobs are kept a day.
pub const DEFAULT_CLEAR_FINISHED_AFTER: Duration = Duration::from_secs(86_400);
/// Longest time between passes; a shorter keep passes as often as it is long (at least every
/// [`MIN_INTERVAL`]).
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest time between passes.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Ended jobs deleted per transaction.
pub const CLEAR_BATCH: usize = 1_000;
/// At most this many transactions per pass; the next pass goes on.
pub const MAX_BATCHES_PER_PASS: usize = 20;

/// The cleaner service.
#[derive(Debug, Clone)]
pub struct Cleaner {
    /// How long ended jobs are kept (zero: deleted on the next pass).
    keep: Duration,
}

impl Cleaner {
    /// A cleaner deleting jobs that ended more than `keep` ago.
    pub fn new(keep: Duration) -> Self {
        Cleaner { keep }
    }
}

impl Default for Cleaner {
    fn default() -> Self {
        Cleaner::new(DEFAULT_CLEAR_FINISHED_AFTER)
    }
}

impl Service for Cleaner {
    /// Ended jobs deleted.
    type Outcome = usize;
    const NAME: &'static str = "cleaner";

    /// As often as the keep is long, from [`MIN_INTERVAL`] to [`MAX_INTERVAL`].
    fn interval(&self) -> Duration {
        self.keep.clamp(MIN_INTERVAL, MAX_INTERVAL)
    }

    fn run_once(&mut self, store: &Store, pass: Pass) -> StoreResult<usize> {
        let keep = chrono::Duration::from_std(self.keep).unwrap_or(chrono::Duration::MAX);
        let before = pass
            .now
            .checked_sub_signed(keep)
            .map_or(crate::model::earliest_time(), |cutoff| cutoff.max(crate::model::earliest_time()));
        let mut cleared = 0;
        for _ in 0..MAX_BATCHES_PER_PASS {
            let deleted = store.clear_finished(before, CLEAR_BATCH)?;
            cleared += deleted;
            if deleted < CLEAR_BATCH {
                break;
            }
        }
        Ok(cleared)
    }

    fn report(cleared: &usize, logger: &Logger) {
        if *cleared > 0 {
            info!(logger, "ended jobs cleared"; "deleted" => cleared);
        }
    }
}
