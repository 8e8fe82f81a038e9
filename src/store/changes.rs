//! What a store knows of changes to its database, so that maintenance passes skip reading
//! what cannot have changed since they last read it.
//!
//! Two counts make a [`ChangeMark`]: the store's own writes that maintenance may care about
//! (every write but those that change nothing the dispatcher or the watchdog reads: claims,
//! heartbeats, clearing ended jobs, returning orphaned claims), counted as each ends; and commits by any other
//! connection (other processes, the application's own connections, the CLI), counted by a
//! watcher where the backend shows them cheaply. On SQLite the watcher reads
//! `PRAGMA data_version` on the writer connection every [`WATCH_INTERVAL`]: its value changes
//! exactly when another connection committed, it touches no table and takes no lock that
//! a writer waits for. PostgreSQL has no such thing; its store gives no marks, and
//! maintenance reads on every pass.
//!
//! A mark is only given while the watcher looks (its last look is at most [`WATCH_FRESH`]
//! old): two equal marks then mean that no write maintenance cares about happened between
//! them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the SQLite watcher reads `PRAGMA data_version`: a job enqueued by another process
/// wakes an idle worker within this.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(25);

/// The oldest last look of the watcher for which the store still gives marks.
pub const WATCH_FRESH: Duration = Duration::from_millis(500);

/// A point in the history of a database as one store sees it (see the module
/// documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeMark {
    own: u64,
    foreign: u64,
}

/// The counts behind [`ChangeMark`]s, shared by a store and its watcher.
#[derive(Debug, Default)]
pub struct Changes {
    own: AtomicU64,
    foreign: AtomicU64,
    /// When the watcher last read the database, if it runs.
    watched: Mutex<Option<Instant>>,
}

impl Changes {
    /// This store wrote something maintenance may care about.
    pub(crate) fn wrote(&self) {
        self.own.fetch_add(1, Ordering::SeqCst);
    }

    /// The watcher read the database at `at` and saw that another connection committed
    /// since its last look, if `committed`.
    pub(crate) fn watched(&self, at: Instant, committed: bool) {
        if committed {
            self.foreign.fetch_add(1, Ordering::SeqCst);
        }
        *self.watched.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(at);
    }

    /// The current mark and when the watcher last read the database, while it looks; `None`
    /// when anything may have changed unseen.
    pub(crate) fn mark(&self) -> Option<(ChangeMark, Instant)> {
        let watched = *self.watched.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let watched = watched.filter(|at| at.elapsed() <= WATCH_FRESH)?;
        let mark = ChangeMark { own: self.own.load(Ordering::SeqCst), foreign: self.foreign.load(Ordering::SeqCst) };
        Some((mark, watched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_given_only_while_the_watcher_looks_and_change_with_every_write() {
        let changes = Changes::default();
        assert!(changes.mark().is_none(), "no watcher");
        changes.watched(Instant::now(), false);
        let (first, _) = changes.mark().unwrap();
        changes.watched(Instant::now(), false);
        assert_eq!(changes.mark().unwrap().0, first, "nothing committed");
        changes.watched(Instant::now(), true);
        let (second, _) = changes.mark().unwrap();
        assert_ne!(second, first, "another connection committed");
        changes.wrote();
        assert_ne!(changes.mark().unwrap().0, second, "the store wrote");
        changes.watched(Instant::now() - WATCH_FRESH - Duration::from_millis(1), false);
        assert!(changes.mark().is_none(), "the watcher stopped looking");
    }
}
