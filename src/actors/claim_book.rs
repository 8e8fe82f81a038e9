//! The process's book of claims: which worker instance (seat) holds which claim.
//!
//! Every claim goes through the book, so the book knows every claim the process holds (the
//! lock is never held across a database call: one hung call must not stop the others). That
//! lets the process
//! - hand back the claims of a worker that crashed or hung (its seat is retired; a claim call
//!   still under way for a retired seat releases what it got the moment it returns), and
//! - settle claims "in doubt": a claim whose COMMIT reached the server but whose reply was lost
//!   leaves jobs claimed by this live process that no worker knows about. After such an error,
//!   the next claim first releases every claim of the process that the book does not know,
//!   provided no other claim ran meanwhile (else it tries again on the next claim).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use chrono::NaiveDateTime;

use crate::store::{ClaimToken, ClaimedJob, ProcessId, QueuePattern, Store, StoreResult};

/// Identifies one worker instance; a restarted worker gets a new seat.
pub type Seat = u64;

#[derive(Debug, Default)]
struct BookState {
    owners: HashMap<ClaimToken, Seat>,
    retired: HashSet<Seat>,
    next_seat: Seat,
    /// Claim calls under way.
    in_flight: usize,
    /// Claim calls ever started, to tell whether one started during a settle.
    started: u64,
}

/// What one [`ClaimBook::claim`] call did.
#[derive(Debug, Default)]
pub struct ClaimPass {
    /// Jobs claimed for the seat, to run.
    pub jobs: Vec<ClaimedJob>,
    /// With `settle`: `Some(n)` when `n` claims of this process that nobody knew about (in
    /// doubt) went back to ready, `None` when other claims were under way and it must be tried
    /// again.
    pub settled: Option<usize>,
}

/// Shared by the supervisor and all workers of one process.
#[derive(Debug, Default)]
pub struct ClaimBook(Mutex<BookState>);

impl ClaimBook {
    fn state(&self) -> MutexGuard<'_, BookState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new seat for a worker instance.
    pub fn seat(&self) -> Seat {
        let mut state = self.state();
        state.next_seat += 1;
        state.next_seat
    }

    /// Claims up to `limit` jobs for `seat`. With `settle`, first returns to ready every claim of
    /// `process` the book does not know (left by a claim whose reply was lost). Blocking.
    #[allow(clippy::too_many_arguments)]
    pub fn claim(
        &self,
        store: &dyn Store,
        seat: Seat,
        process: ProcessId,
        queues: &[QueuePattern],
        limit: usize,
        settle: bool,
        now: NaiveDateTime,
    ) -> StoreResult<ClaimPass> {
        let mut pass = ClaimPass::default();
        if settle {
            pass.settled = self.settle(store, process, now)?;
        }
        {
            let mut state = self.state();
            state.in_flight += 1;
            state.started += 1;
        }
        let claimed = store.claim(process, queues, limit, now);
        let mut state = self.state();
        state.in_flight -= 1;
        let jobs = claimed?;
        if state.retired.contains(&seat) {
            drop(state);
            // The worker was replaced while this call was under way: nobody will run these.
            for job in jobs {
                store.release(job.token, now)?;
            }
            return Ok(pass);
        }
        state.owners.extend(jobs.iter().map(|job| (job.token, seat)));
        pass.jobs = jobs;
        Ok(pass)
    }

    /// Releases the claims of `process` that no seat knows, unless a claim call overlapped.
    fn settle(&self, store: &dyn Store, process: ProcessId, now: NaiveDateTime) -> StoreResult<Option<usize>> {
        let started = {
            let state = self.state();
            if state.in_flight > 0 {
                return Ok(None);
            }
            state.started
        };
        let held = store.claimed_by(process)?;
        let unknown: Vec<ClaimToken> = {
            let state = self.state();
            if state.in_flight > 0 || state.started != started {
                return Ok(None);
            }
            held.into_iter().filter(|token| !state.owners.contains_key(token)).collect()
        };
        // A token settled by its worker meanwhile is released as stale: no harm done.
        for token in &unknown {
            store.release(*token, now)?;
        }
        Ok(Some(unknown.len()))
    }

    /// The claim's outcome is in the database (or it was found stale): forget it.
    pub fn settled(&self, token: &ClaimToken) {
        self.state().owners.remove(token);
    }

    /// Retires `seat` and returns the claims it held, for the caller to release.
    pub fn retire(&self, seat: Seat) -> Vec<ClaimToken> {
        let mut state = self.state();
        state.retired.insert(seat);
        let tokens: Vec<ClaimToken> = state.owners.iter().filter(|(_, s)| **s == seat).map(|(t, _)| *t).collect();
        for token in &tokens {
            state.owners.remove(token);
        }
        tokens
    }

    /// Claims currently known.
    pub fn len(&self) -> usize {
        self.state().owners.len()
    }

    /// Whether no claim is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{EnqueueOptions, NewJob};
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Fenced, NewProcess};

    fn setup(jobs: usize) -> (tempfile::TempDir, SqliteStore, ProcessId, NaiveDateTime) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("book.sqlite3"), 2).unwrap();
        store.migrate().unwrap();
        let now = chrono::Utc::now().naive_utc();
        let new: Vec<_> =
            (0..jobs).map(|n| NewJob::from_json("k", serde_json::json!(n), EnqueueOptions::new()).unwrap()).collect();
        store.enqueue(&new, now).unwrap();
        let process = NewProcess {
            kind: "Runtime".into(),
            name: "p".into(),
            pid: 1,
            hostname: "h".into(),
            metadata: serde_json::Value::Null,
        };
        let id = store.register_process(&process, now).unwrap();
        (dir, store, id, now)
    }

    #[test]
    fn retired_seat_hands_back_its_claims_and_later_claims_release_themselves() {
        let (_dir, store, process, now) = setup(3);
        let book = ClaimBook::default();
        let seat = book.seat();
        let pass = book.claim(&store, seat, process, &[QueuePattern::All], 2, false, now).unwrap();
        assert_eq!(pass.jobs.len(), 2);
        let mut handed_back = book.retire(seat);
        handed_back.sort_by_key(|t| t.claim_id);
        assert_eq!(handed_back, pass.jobs.iter().map(|j| j.token).collect::<Vec<_>>());
        assert!(book.is_empty());
        // A claim that completes for the retired seat releases what it got at once.
        let late = book.claim(&store, seat, process, &[QueuePattern::All], 5, false, now).unwrap();
        assert!(late.jobs.is_empty());
        assert_eq!(store.claimed_by(process).unwrap().len(), 2, "only the retired seat's first claims remain");
    }

    #[test]
    fn settling_releases_claims_whose_reply_was_lost() {
        let (_dir, store, process, now) = setup(1);
        let book = ClaimBook::default();
        let seat = book.seat();
        // A claim that committed but whose answer never reached the book.
        let lost = store.claim(process, &[QueuePattern::All], 1, now).unwrap();
        let pass = book.claim(&store, seat, process, &[QueuePattern::All], 1, true, now).unwrap();
        assert_eq!(pass.settled, Some(1));
        assert_eq!(pass.jobs.len(), 1, "the released job is claimed again, now known to the book");
        assert_ne!(pass.jobs[0].token, lost[0].token);
        assert_eq!(store.finish(lost[0].token, now).unwrap(), Fenced::Stale);
        // Known claims are never settled away.
        let again = book.claim(&store, seat, process, &[QueuePattern::All], 1, true, now).unwrap();
        assert_eq!(again.settled, Some(0));
        assert_eq!(store.claimed_by(process).unwrap(), vec![pass.jobs[0].token]);
    }
}
