//! Tidier: keeps claims fast on PostgreSQL whatever autovacuum does. A claim walks past the
//! index entries of ready rows earlier claims deleted until a vacuum clears them; the store
//! counts the jobs it claimed and vacuums the ready and claimed tables every
//! [`TIDY_AFTER_CLAIMS`](crate::store::TIDY_AFTER_CLAIMS) of them ([`Store::tidy`]). A pass
//! that has nothing to do reads nothing. SQLite has nothing to tidy. Every process runs it,
//! leader or not: the count is of the claims its own store made.

use std::time::Duration;

use slog::{debug, Logger};

use super::{Pass, Service};
use crate::store::{Store, StoreResult};

/// Time between passes: how long claims may go on past the count before a vacuum.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The tidier service: a pass every [`INTERVAL`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Tidier;

impl Service for Tidier {
    /// Whether the pass tidied.
    type Outcome = bool;
    const NAME: &'static str = "tidier";
    const LEADER_ONLY: bool = false;

    fn interval(&self) -> Duration {
        INTERVAL
    }

    fn run_once(&mut self, store: &Store, _pass: Pass) -> StoreResult<bool> {
        store.tidy()
    }

    fn report(tidied: &bool, logger: &Logger) {
        if *tidied {
            debug!(logger, "queue tables tidied");
        }
    }
}
