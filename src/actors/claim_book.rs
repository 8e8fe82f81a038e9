//! The process's book of claims: every claim this process holds, from the claim until its
//! outcome is in the database, whichever actor happens to be alive.
//!
//! A claim belongs to the process, not to the worker instance that took it: while its
//! execution runs, or its outcome waits to be written, the claim stays in the book, and the
//! replacement of a crashed or stuck worker finds it there. Only a claim that never started
//! (its worker was replaced between the claim and the start) is handed back, and a drain waits
//! for the book to empty. The book lets the process
//! - count the busy slots of each worker group across worker restarts,
//! - hand back the unstarted claims of a retired worker seat (a claim call still under way for
//!   a retired seat releases what it got the moment it returns),
//! - keep each running execution's [`Cancellation`], fired by an operator's cancel (polled by
//!   the completer while executions run) or at the end of a drain,
//! - pass ended executions to the completer, which writes their outcomes, and
//! - settle claims "in doubt": a claim whose COMMIT reached the server but whose reply was lost
//!   leaves jobs claimed by this live process that nobody knows about. After such an error,
//!   the next claim first releases every claim of the process that the book does not know,
//!   provided no other claim ran meanwhile (else it tries again on the next claim).
//!
//! The lock is never held across a database call: one hung call must not stop the others.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::NaiveDateTime;
use slog::{warn, Logger};

use crate::job::{CancelReason, Cancellation};
use crate::lifecycle::Transition;
use crate::metrics::Telemetry;
use crate::model::{ClaimToken, ClaimedJob, JobId, ProcessId};
use crate::store::params::Claim;
use crate::store::{Store, StoreResult};

/// Identifies one worker instance; a restarted worker gets a new seat.
pub type Seat = u64;

/// Index of a worker group (`SOLIDQ_WORKERS` entry).
pub type Group = usize;

/// How the book wakes an actor: a function that sends the actor its message (the completer's
/// and the workers' own messages, so that the book names none of them).
pub type Wake = Arc<dyn Fn(WakeReason) + Send + Sync>;

/// Why the book wakes a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeReason {
    /// The group's free slots reached one of the counts its worker asked for.
    SlotsFreed,
    /// Jobs were made ready (in this process, or another one told the listener).
    JobsReady,
}

/// Where a held claim is in its life.
#[derive(Debug, Clone)]
enum Phase {
    /// Claimed; no execution started yet.
    Claimed,
    /// An execution runs in this process.
    Running,
    /// The execution ended; its outcome is in the queue for the completer, or being written.
    Ended,
}

#[derive(Debug)]
struct Held {
    job: ClaimedJob,
    group: Group,
    seat: Seat,
    phase: Phase,
    since: Instant,
    /// The execution's token, from its start.
    cancellation: Cancellation,
}

#[derive(Default)]
struct BookState {
    held: HashMap<ClaimToken, Held>,
    /// Slots per group.
    groups: HashMap<Group, Slots>,
    /// Outcomes waiting for the completer, in the order executions ended.
    ended: Vec<PendingOutcome>,
    /// The completer was told about the outcomes waiting and has not taken them yet: one
    /// message for any number of ended executions.
    completer_told: bool,
    retired: HashSet<Seat>,
    next_seat: Seat,
    /// Claim calls under way.
    in_flight: usize,
    /// Claim calls ever started, to tell whether one started during a settle.
    started: u64,
    /// Tells the completer that outcomes wait, and with `true` that the database answers again.
    completer: Option<Arc<dyn Fn(bool) + Send + Sync>>,
}

/// The slots of one worker group.
///
/// A slot is busy from the claim until the execution ends. An ended execution's outcome
/// still holds its claim until it is written, but not a slot: the next jobs run while the
/// last ones are written. Outcomes waiting to be written hold back claims once there are more
/// of them than the concurrency (the database is slow or away): at most twice the
/// concurrency of claims is ever held.
#[derive(Default)]
struct Slots {
    /// Claimed or running.
    busy: usize,
    /// Ended, outcome not yet written.
    unwritten: usize,
    /// The group's worker: its concurrency, the counts of free slots at which it wants to
    /// hear of them, and how it is woken.
    worker: Option<(usize, WakeAt, Wake)>,
}

/// The counts of free slots at which a worker is woken: each once, as the count crosses it.
pub type WakeAt = [usize; 2];

impl Slots {
    fn free(&self) -> usize {
        let Some((concurrency, _, _)) = &self.worker else { return 0 };
        let over = self.unwritten.saturating_sub(*concurrency);
        concurrency.saturating_sub(self.busy + over)
    }

    /// Applies `change`, waking the worker when the free slots cross one of its counts: once
    /// as the count is crossed, not for every slot after it.
    fn change(&mut self, change: impl FnOnce(&mut Slots)) {
        let before = self.free();
        change(self);
        if let Some((_, wake_at, wake)) = &self.worker {
            let after = self.free();
            if wake_at.iter().any(|&at| before < at && after >= at) {
                wake(WakeReason::SlotsFreed);
            }
        }
    }
}

impl BookState {
    fn slots(&mut self, group: Group) -> &mut Slots {
        self.groups.entry(group).or_default()
    }

    fn insert(&mut self, held: Held) {
        self.slots(held.group).busy += 1;
        self.held.insert(held.job.token, held);
    }

    fn remove(&mut self, token: &ClaimToken) -> Option<Held> {
        let held = self.held.remove(token)?;
        let ended = matches!(held.phase, Phase::Ended);
        self.slots(held.group).change(|slots| {
            if ended {
                slots.unwritten -= 1;
            } else {
                slots.busy -= 1;
            }
        });
        Some(held)
    }
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

/// What releasing a set of claims changed, as the store reported it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Claims returned to ready.
    pub released: usize,
    /// Claims that were no longer this process's (reaped meanwhile): nothing changed.
    pub fenced: usize,
}

/// Releases `tokens` (never started) in one transaction.
pub fn release_all(store: &Store, tokens: &[ClaimToken], now: NaiveDateTime) -> StoreResult<Released> {
    let settled = store.release_claims(tokens, now)?;
    Ok(Released { released: settled.applied.len(), fenced: settled.fenced.len() })
}

/// A held claim whose outcome the completer is to write.
#[derive(Debug, Clone)]
pub(crate) struct PendingOutcome {
    /// The claim.
    pub(crate) job: ClaimedJob,
    /// What to write.
    pub(crate) transition: Transition,
    /// How long the execution ran.
    pub(crate) ran_for: std::time::Duration,
}

/// Shared by the supervisor, the workers, the completer and the executions of one process.
#[derive(Default)]
pub struct ClaimBook(Mutex<BookState>, Telemetry);

impl std::fmt::Debug for ClaimBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimBook").field("held", &self.len()).finish_non_exhaustive()
    }
}

impl ClaimBook {
    /// An empty book whose claims are counted into `telemetry`'s metrics.
    pub(crate) fn reporting_to(telemetry: Telemetry) -> Self {
        ClaimBook(Mutex::default(), telemetry)
    }

    /// Where the executions of this book's claims are counted and reported.
    pub(crate) fn telemetry(&self) -> &Telemetry {
        &self.1
    }

    fn state(&self) -> MutexGuard<'_, BookState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new seat for a worker instance.
    pub fn seat(&self) -> Seat {
        let mut state = self.state();
        state.next_seat += 1;
        state.next_seat
    }

    /// How ended executions are announced (to the completer, set again when it restarts);
    /// `notify(true)` also means the database answers again.
    pub fn set_completer(&self, notify: Arc<dyn Fn(bool) + Send + Sync>) {
        self.state().completer = Some(notify);
    }

    /// `group`'s worker (set again when it restarts): it runs up to `concurrency` jobs at
    /// once, and `wake` runs when the free slots reach either count of `wake_at`.
    pub fn set_worker(&self, group: Group, concurrency: usize, wake_at: WakeAt, wake: Wake) {
        self.state().slots(group).worker = Some((concurrency, wake_at.map(|at| at.max(1)), wake));
    }

    /// Claims up to `limit` jobs for `seat` of `group`. With `settle`, first returns to ready
    /// every claim of `process` the book does not know (left by a claim whose reply was lost).
    /// Blocking.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn claim(
        &self,
        store: &Store,
        (group, seat): (Group, Seat),
        claim: &Claim<'_>,
        settle: bool,
        logger: &Logger,
    ) -> StoreResult<ClaimPass> {
        let Claim { process, queues, kinds, limit, now } = *claim;
        let mut pass = ClaimPass::default();
        if settle {
            pass.settled = self.settle(store, process, now)?;
        }
        {
            let mut state = self.state();
            state.in_flight += 1;
            state.started += 1;
        }
        let claimed = store.claim(process, queues, kinds, limit, now);
        let mut state = self.state();
        state.in_flight -= 1;
        let jobs = claimed?;
        if state.retired.contains(&seat) {
            drop(state);
            // The worker was replaced while this call was under way: nobody will run these.
            let tokens: Vec<ClaimToken> = jobs.iter().map(|job| job.token).collect();
            let outcome = release_all(store, &tokens, now)?;
            if !tokens.is_empty() {
                warn!(logger, "a replaced worker's late claim returned unstarted to ready";
                    "released" => outcome.released, "fenced" => outcome.fenced,
                    "job_ids" => ?tokens.iter().map(|t| t.job_id).collect::<Vec<_>>());
            }
            return Ok(pass);
        }
        let since = Instant::now();
        for job in &jobs {
            let cancellation = Cancellation::new();
            state.insert(Held { job: job.clone(), group, seat, phase: Phase::Claimed, since, cancellation });
        }
        pass.jobs = jobs;
        Ok(pass)
    }

    /// Releases the claims of `process` that no seat knows, unless a claim call overlapped.
    fn settle(&self, store: &Store, process: ProcessId, now: NaiveDateTime) -> StoreResult<Option<usize>> {
        let started = {
            let state = self.state();
            if state.in_flight > 0 {
                return Ok(None);
            }
            state.started
        };
        // Inside the store's transaction, after it read the process's claims: a claim call that
        // started meanwhile may have committed claims the book does not know yet.
        store.settle_lost_claims(process, now, |held| {
            let state = self.state();
            if state.in_flight > 0 || state.started != started {
                return None;
            }
            Some(held.into_iter().filter(|token| !state.held.contains_key(token)).collect())
        })
    }

    /// Marks a claim as running, unless it was handed back meanwhile (its seat retired).
    /// Returns the execution's token if it may start.
    pub fn start(&self, token: ClaimToken) -> Option<Cancellation> {
        let mut state = self.state();
        match state.held.get_mut(&token) {
            Some(held) if matches!(held.phase, Phase::Claimed) => {
                held.phase = Phase::Running;
                held.since = Instant::now();
                Some(held.cancellation.clone())
            }
            _ => None,
        }
    }

    /// Fires the token of the running execution of job `job_id` with `reason`. Returns whether
    /// it fired now (false: no such execution runs here, or its token fired before).
    pub fn cancel(&self, job_id: JobId, reason: CancelReason) -> bool {
        let state = self.state();
        let mut fired = false;
        for held in state.held.values() {
            if held.job.token.job_id == job_id && matches!(held.phase, Phase::Running) {
                fired |= held.cancellation.cancel(reason);
            }
        }
        fired
    }

    /// Fires the token of every running execution with `reason`; returns how many fired.
    pub fn cancel_all(&self, reason: CancelReason) -> usize {
        let state = self.state();
        state
            .held
            .values()
            .filter(|held| matches!(held.phase, Phase::Running))
            .filter(|held| held.cancellation.cancel(reason))
            .count()
    }

    /// Whether any execution runs (and so could be cancelled).
    pub fn running(&self) -> bool {
        self.state().held.values().any(|held| matches!(held.phase, Phase::Running))
    }

    /// Records how a running execution ended and tells the completer. Returns when it started,
    /// or `None` if the claim is no longer in the book (released at shutdown): the caller
    /// reports the outcome as dropped.
    pub(crate) fn ended(&self, token: ClaimToken, transition: Transition) -> Option<Instant> {
        let mut state = self.state();
        let held = state.held.get_mut(&token)?;
        if matches!(held.phase, Phase::Ended) {
            return Some(held.since);
        }
        held.phase = Phase::Ended;
        let (since, group) = (held.since, held.group);
        let pending = PendingOutcome { job: held.job.clone(), transition, ran_for: since.elapsed() };
        state.ended.push(pending);
        state.slots(group).change(|slots| {
            slots.busy -= 1;
            slots.unwritten += 1;
        });
        if !state.completer_told {
            if let Some(completer) = state.completer.clone() {
                state.completer_told = true;
                completer(false);
            }
        }
        Some(since)
    }

    /// Takes every ended execution for writing (they stay held until written).
    pub(crate) fn take_ended(&self) -> Vec<PendingOutcome> {
        let mut state = self.state();
        state.completer_told = false;
        std::mem::take(&mut state.ended)
    }

    /// The outcomes of `tokens` are in the database, or were refused as stale: forget the
    /// claims (their slots are free).
    pub fn written(&self, tokens: &[ClaimToken]) {
        let mut state = self.state();
        for token in tokens {
            state.remove(token);
        }
    }

    /// Writing `pending` failed: they wait to be written again (claims released meanwhile, at
    /// shutdown, are not).
    pub(crate) fn unwritten(&self, pending: Vec<PendingOutcome>) {
        let mut state = self.state();
        let state = &mut *state;
        state.ended.extend(pending.into_iter().filter(|outcome| state.held.contains_key(&outcome.job.token)));
    }

    /// Jobs were made ready: every worker claims now rather than at its next poll.
    pub fn jobs_ready(&self) {
        let state = self.state();
        for slots in state.groups.values() {
            if let Some((_, _, wake)) = &slots.worker {
                wake(WakeReason::JobsReady);
            }
        }
    }

    /// The database answered (a claim succeeded): a completer backing off may write now.
    pub fn database_answered(&self) {
        if let Some(completer) = &self.state().completer {
            completer(true);
        }
    }

    /// Retires `seat` and takes the claims it holds that never started, for the caller to
    /// release. Running executions and outcomes still to be written stay: they belong to the
    /// process, and the seat's replacement counts them as busy slots.
    pub fn retire(&self, seat: Seat) -> Vec<ClaimToken> {
        let mut state = self.state();
        state.retired.insert(seat);
        let unstarted: Vec<ClaimToken> = state
            .held
            .iter()
            .filter(|(_, held)| held.seat == seat && matches!(held.phase, Phase::Claimed))
            .map(|(token, _)| *token)
            .collect();
        for token in &unstarted {
            state.remove(token);
        }
        unstarted
    }

    /// Slots of `group` free for new claims (none before its worker is set).
    pub fn free(&self, group: Group) -> usize {
        self.state().groups.get(&group).map_or(0, Slots::free)
    }

    /// Claims of `group` held, in any phase.
    #[cfg(test)]
    pub fn held_by(&self, group: Group) -> usize {
        self.state().groups.get(&group).map_or(0, |slots| slots.busy + slots.unwritten)
    }

    /// Claims held plus claim calls under way: what a drain waits for.
    pub fn open(&self) -> usize {
        let state = self.state();
        state.held.len() + state.in_flight
    }

    /// Forgets every claim (the process deregistered, which released them) and returns their
    /// job ids, for the log: executions still running, or outcomes not yet written.
    pub fn clear(&self) -> Vec<JobId> {
        let mut state = self.state();
        let mut ids: Vec<JobId> = state.held.keys().map(|token| token.job_id).collect();
        ids.sort_unstable();
        state.held.clear();
        state.ended.clear();
        for slots in state.groups.values_mut() {
            (slots.busy, slots.unwritten) = (0, 0);
        }
        ids
    }

    /// Claims currently held.
    pub fn len(&self) -> usize {
        self.state().held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DatabaseUrl, NewJob, NewProcess, QueuePattern};
    use crate::EnqueueOptions;

    fn setup(jobs: usize) -> (tempfile::TempDir, Store, ProcessId, NaiveDateTime) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseUrl::Sqlite(dir.path().join("book.sqlite3")), 2).unwrap();
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
            metadata: Default::default(),
        };
        let id = store.register_process(&process, now).unwrap();
        (dir, store, id, now)
    }

    fn claim(process: ProcessId, limit: usize, now: NaiveDateTime) -> Claim<'static> {
        static KINDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let kinds = KINDS.get_or_init(|| vec!["k".to_string()]);
        Claim { process, queues: &[QueuePattern::All], kinds, limit, now }
    }

    fn logger() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    #[test]
    fn retiring_a_seat_hands_back_only_unstarted_claims() {
        let (_dir, store, process, now) = setup(4);
        let book = ClaimBook::default();
        let seat = book.seat();
        let pass = book.claim(&store, (0, seat), &claim(process, 3, now), false, &logger()).unwrap();
        assert_eq!(pass.jobs.len(), 3);
        let [running, ended, unstarted] = [pass.jobs[0].token, pass.jobs[1].token, pass.jobs[2].token];
        let token = book.start(running).expect("a claimed job starts");
        assert!(book.start(ended).is_some());
        assert!(book.start(running).is_none(), "an execution starts once");
        assert!(book.running());
        assert!(book.ended(ended, Transition::Complete).is_some());
        assert_eq!(book.retire(seat), vec![unstarted], "running and ended executions stay with the process");
        assert!(book.start(unstarted).is_none(), "a handed-back claim never starts");
        assert!(!book.cancel(ended.job_id, CancelReason::Cancelled), "an ended execution is not cancelled");
        assert!(!book.cancel(unstarted.job_id, CancelReason::Cancelled));
        assert!(!token.is_cancelled());
        assert!(book.cancel(running.job_id, CancelReason::Cancelled));
        assert_eq!(token.reason(), Some(CancelReason::Cancelled));
        assert!(!book.cancel(running.job_id, CancelReason::Timeout), "a token fires once");
        assert_eq!(book.cancel_all(CancelReason::Shutdown), 0);
        assert_eq!((book.held_by(0), book.open()), (2, 2));
        // A claim that completes for the retired seat releases what it got at once, unstarted.
        let late = book.claim(&store, (0, seat), &claim(process, 5, now), false, &logger()).unwrap();
        assert!(late.jobs.is_empty());
        assert_eq!(store.claims_of(process).unwrap().len(), 3, "the late claim's job went back");
        let pending = book.take_ended();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].job.token, ended);
        assert!(book.take_ended().is_empty(), "an outcome is taken for writing once");
        book.unwritten(pending);
        assert_eq!(book.take_ended().len(), 1, "a failed write is taken again");
        book.written(&[ended]);
        assert_eq!(book.held_by(0), 1);
        assert_eq!(book.clear(), vec![running.job_id]);
        assert_eq!(book.ended(running, Transition::Complete), None, "an outcome after the drain is dropped");
        assert_eq!(book.len(), 0);
    }

    #[test]
    fn settling_releases_claims_whose_reply_was_lost() {
        let (_dir, store, process, now) = setup(1);
        let book = ClaimBook::default();
        let seat = book.seat();
        // A claim that committed but whose answer never reached the book.
        let lost = store.claim(process, &[QueuePattern::All], &["k".into()], 1, now).unwrap();
        let pass = book.claim(&store, (0, seat), &claim(process, 1, now), true, &logger()).unwrap();
        assert_eq!(pass.settled, Some(1));
        assert_eq!(pass.jobs.len(), 1, "the released job is claimed again, now known to the book");
        assert_ne!(pass.jobs[0].token, lost[0].token);
        assert_eq!(pass.jobs[0].attempts, 1, "the lost claim's attempt was given back");
        assert_eq!(store.complete_claims(&[lost[0].token], now).unwrap().fenced, vec![lost[0].token]);
        // Known claims are never settled away.
        let again = book.claim(&store, (0, seat), &claim(process, 1, now), true, &logger()).unwrap();
        assert_eq!(again.settled, Some(0));
        assert_eq!(store.claims_of(process).unwrap(), vec![pass.jobs[0].token]);
    }
}
