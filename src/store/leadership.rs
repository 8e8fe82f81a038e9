//! Leadership: which process runs the maintenance sweeps (the watchdog over the others, the
//! dispatcher, the blocked-key sweep, the recurring scheduler, the cleaner, the latency alarm).
//!
//! Two things make a leader:
//! - **The leader lock**, held for the leader's life and freed by the database or the kernel
//!   when it dies: a session-level advisory lock on PostgreSQL and `GET_LOCK` on MySQL, both on
//!   the process's dedicated session connection (the one that proves it alive), and an
//!   exclusive file lock on `<database>-leader` beside a SQLite file. At most one process holds
//!   it; a process that takes it ([`Store::try_lead`]) is elected.
//! - **The term** in `solidq_leaders`, one more at each election ([`Store::take_leadership`]).
//!   Every write a leader's sweep makes runs inside [`Store::as_leader`], which checks in the
//!   same transaction that the row still has the leader's term (locking the row shared, so no
//!   election commits meanwhile). A leader whose lock was lost without it noticing yet (its
//!   session connection cut, the server restarted) and who was replaced therefore changes
//!   nothing: its writes fail with [`StoreError::Deposed`](super::StoreError::Deposed).
//!
//! The row also tells operators who leads and since when ([`Store::leader`]).

use std::cell::Cell;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::QueryResult;

use super::schema::solidq_leaders as leaders;
use super::sql_types::at;
use super::{Store, StoreResult};
use crate::model::ProcessId;

/// The row of the maintenance leader in `solidq_leaders`.
pub const MAINTENANCE: &str = "maintenance";

/// What a leader holds: its process and the term it was elected for. Writes made inside
/// [`Store::as_leader`] with it are fenced by the term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The leading process.
    pub process: ProcessId,
    /// Its term: one more than the previous leader's.
    pub term: i64,
}

/// The leader as `solidq_leaders` names it: the process last elected, which may have died since
/// (until another process takes the lock and the row).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, serde::Serialize)]
pub struct Leader {
    /// The elected process's id (`solidq_processes.id`).
    pub process: ProcessId,
    /// Its term: elections since the table was created.
    pub term: i64,
    /// When it was elected (UTC).
    pub elected_at: NaiveDateTime,
}

/// One try of the leader lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidacy {
    /// Whether the process holds the leader lock now.
    pub leads: bool,
    /// How many processes are registered, when the try read it on the way (the server
    /// backends: a candidate spaces its tries by the fleet's size); `None` where a try costs
    /// no statement (SQLite's file lock).
    pub fleet: Option<usize>,
}

/// Why a fenced write failed, carried through diesel's error to [`Store::write`].
#[derive(Debug)]
pub(crate) struct Deposed(pub i64);

impl std::fmt::Display for Deposed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the leader of term {} was deposed", self.0)
    }
}

impl std::error::Error for Deposed {}

thread_local! {
    /// The term the writes of this thread are fenced by, inside [`Store::as_leader`].
    static FENCE: Cell<Option<i64>> = const { Cell::new(None) };
}

/// The term the current thread's writes are fenced by, if any.
pub(crate) fn fence() -> Option<i64> {
    FENCE.with(Cell::get)
}

/// Inside a write transaction: fails with [`Deposed`] unless the maintenance leader's row still
/// has `term` (the dialect locks it shared until the transaction ends).
pub(crate) fn check_fence(store: &Store, conn: &mut super::DbConnection, term: i64) -> QueryResult<()> {
    match store.dialect().hold_term(conn, term)? {
        true => Ok(()),
        false => Err(diesel::result::Error::QueryBuilderError(Box::new(Deposed(term)))),
    }
}

/// Whether `err` is a fenced write's refusal; its term.
pub(crate) fn deposed(err: &diesel::result::Error) -> Option<i64> {
    match err {
        diesel::result::Error::QueryBuilderError(inner) => inner.downcast_ref::<Deposed>().map(|d| d.0),
        _ => None,
    }
}

/// The leader `solidq_leaders` names, on `conn` (in the caller's snapshot).
pub(crate) fn leader_on(conn: &mut super::DbConnection) -> QueryResult<Option<Leader>> {
    leaders::table
        .filter(leaders::name.eq(MAINTENANCE))
        .select((leaders::process_id, leaders::term, leaders::elected_at))
        .first(conn)
        .optional()
}

impl Store {
    /// Tries the leader lock for `process` (registered through this store), or checks that
    /// it still holds it. Never waits for the lock. Costs one statement on the server
    /// backends, none on SQLite.
    pub fn try_lead(&self, process: ProcessId) -> StoreResult<Candidacy> {
        self.dialect().try_lead(process)
    }

    /// Records that `process`, which holds the leader lock, leads: the row of
    /// [`MAINTENANCE`] gets its id and the next term. Call it once per election, after
    /// [`Store::try_lead`] said the lock is held.
    pub fn take_leadership(&self, process: ProcessId, now: NaiveDateTime) -> StoreResult<Lease> {
        let term = self.write_unmarked("recording the election", true, |conn| {
            let last: Option<i64> =
                leaders::table.filter(leaders::name.eq(MAINTENANCE)).select(leaders::term).first(conn).optional()?;
            let term = last.unwrap_or(0) + 1;
            if last.is_some() {
                diesel::update(leaders::table.filter(leaders::name.eq(MAINTENANCE)))
                    .set((leaders::process_id.eq(process), leaders::term.eq(term), leaders::elected_at.eq(at(now))))
                    .execute(conn)?;
            } else {
                diesel::insert_into(leaders::table)
                    .values((
                        leaders::name.eq(MAINTENANCE),
                        leaders::process_id.eq(process),
                        leaders::term.eq(term),
                        leaders::elected_at.eq(at(now)),
                    ))
                    .execute(conn)?;
            }
            Ok(term)
        })?;
        Ok(Lease { process, term })
    }

    /// Gives up the leader lock of `process` if it holds it (a clean stop; deregistering does
    /// it too). Another process is elected at its next try.
    pub fn resign(&self, process: ProcessId) {
        self.dialect().resign(process);
    }

    /// The leader `solidq_leaders` names, if any was ever elected.
    pub fn leader(&self) -> StoreResult<Option<Leader>> {
        self.with_connection("reading the leader", leader_on)
    }

    /// Runs `f`, in which every write this thread makes through a store checks, in its own
    /// transaction, that `lease` is still the current term; a write after a later election
    /// fails with [`StoreError::Deposed`](super::StoreError::Deposed) and changes nothing. The leader runs each sweep in
    /// it. Reads are not fenced.
    pub fn as_leader<T>(&self, lease: Lease, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<i64>);
        impl Drop for Restore {
            fn drop(&mut self) {
                FENCE.with(|fence| fence.set(self.0));
            }
        }
        let _restore = Restore(FENCE.with(|fence| fence.replace(Some(lease.term))));
        f()
    }
}

/// Whether this process leads now, shared by its election (which sets it) and its sweeps
/// (which run only while it is set, fenced by its term, and clear it when a write finds the
/// term replaced). Cheap to clone.
#[derive(Clone, Default)]
pub struct Leadership(std::sync::Arc<LeadershipState>);

#[derive(Default)]
struct LeadershipState {
    lease: std::sync::Mutex<Option<Lease>>,
    /// Told when this process is elected (held weakly: dropping the `Arc` unsubscribes).
    on_elected: std::sync::Mutex<Vec<std::sync::Weak<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Leadership").field(&self.lease()).finish()
    }
}

impl Leadership {
    /// Calls `wake` each time this process is elected, on the electing thread (it must not
    /// block), so that the leader's services start at once rather than at their next tick.
    pub fn on_elected(&self, wake: &std::sync::Arc<dyn Fn() + Send + Sync>) {
        let mut wakers = self.0.on_elected.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        wakers.retain(|waker| waker.strong_count() > 0);
        wakers.push(std::sync::Arc::downgrade(wake));
    }

    /// The lease this process leads with, if it leads.
    pub fn lease(&self) -> Option<Lease> {
        *self.0.lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this process leads.
    pub fn leads(&self) -> bool {
        self.lease().is_some()
    }

    /// This process was elected with `lease`.
    pub(crate) fn elected(&self, lease: Lease) {
        *self.0.lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(lease);
        let wakers: Vec<_> = {
            let wakers = self.0.on_elected.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            wakers.iter().filter_map(std::sync::Weak::upgrade).collect()
        };
        wakers.iter().for_each(|wake| wake());
    }

    /// This process no longer leads (its lock is gone, or it stopped).
    pub(crate) fn ended(&self) {
        *self.0.lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// A write of `term` was fenced: ends the lease if it is still that term's. Returns
    /// whether it did.
    pub(crate) fn deposed(&self, term: i64) -> bool {
        let mut lease = self.0.lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if lease.is_some_and(|lease| lease.term == term) {
            *lease = None;
            return true;
        }
        false
    }
}
