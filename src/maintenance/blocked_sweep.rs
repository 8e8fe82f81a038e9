//! Blocked sweep: lets in the blocked jobs whose concurrency keys have room
//! ([`Store::release_blocked`]). A holder that ends lets the next blocked jobs in within its
//! own transaction; the sweep is the safety net for a release cut short by a crash between two
//! transactions, and for holders claimed longer ago than their limit's duration. One read when
//! nothing is blocked. It also resolves waiting jobs whose prerequisites all ended
//! ([`Store::resolve_waiting`]: a PostgreSQL completion racing the enqueue of a dependant, cut
//! short by a crash before it resolved it).

use std::time::Duration;

use slog::{info, Logger};

use super::{Pass, Service};
use crate::store::{Store, StoreResult};

/// Time between sweeps.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The blocked sweep service: every [`INTERVAL`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockedSweep;

impl Service for BlockedSweep {
    /// Blocked jobs let in.
    type Outcome = usize;
    const NAME: &'static str = "blocked-sweep";

    fn interval(&self) -> Duration {
        INTERVAL
    }

    fn run_once(&mut self, store: &Store, pass: Pass) -> StoreResult<usize> {
        Ok(store.release_blocked(pass.now)? + store.resolve_waiting(pass.now)?)
    }

    fn report(released: &usize, logger: &Logger) {
        if *released > 0 {
            info!(logger, "blocked or waiting jobs released by the sweep"; "released" => released);
        }
    }
}
