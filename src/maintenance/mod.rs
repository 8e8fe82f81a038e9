//! Maintenance services: the periodic work a process does beside running jobs. Each service
//! has a config with documented defaults and a `run_once` that makes one pass over the store
//! and returns what it did, so it is tested directly with a chosen time; the actor that runs
//! it on a schedule (`actors/periodic.rs`) only ticks, backs off on database errors and
//! logs.
//!
//! - [`dispatcher`]: moves due scheduled jobs (and retries whose backoff passed) to ready.
//! - [`watchdog`]: finds dead processes, hands their claims back, returns orphaned claims.
//! - [`scheduler`]: enqueues the runs of recurring tasks.
//! - [`blocked_sweep`]: lets in blocked jobs whose concurrency keys have room.
//! - [`cleaner`]: deletes ended jobs older than `SOLIDQ_CLEAR_FINISHED_AFTER`.
//! - [`latency_alarm`]: alerts when the job at the head of a queue waits too long.
//! - [`tidier`]: vacuums the queue tables after many claims (PostgreSQL).
//! - [`election`]: elects the one process whose services above run (every process runs it).
//!
//! Only the elected leader runs the services marked [`Service::LEADER_ONLY`] (all but the
//! election): each of its passes writes as that leader (`Store::as_leader`), so a deposed
//! leader's pass changes nothing.

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use slog::Logger;

use crate::model::ProcessId;
use crate::store::{Lease, Store, StoreResult};

pub mod blocked_sweep;
pub mod cleaner;
pub mod dispatcher;
pub mod election;
pub mod latency_alarm;
pub mod scheduler;
pub mod tidier;
pub mod watchdog;

/// When and for whom a pass runs.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    /// The process running the service (the watchdog never judges its own process).
    pub own: Option<ProcessId>,
    /// Wall clock (UTC), for the database's timestamps.
    pub now: NaiveDateTime,
    /// Monotonic clock, for durations measured in this process.
    pub clock: Instant,
    /// The lease the pass runs under when this process leads (its writes are fenced by it);
    /// `None` for a pass outside the election (a test, a tool).
    pub lease: Option<Lease>,
}

impl Pass {
    /// A pass at the current time.
    pub fn now(own: Option<ProcessId>) -> Pass {
        Pass { own, now: chrono::Utc::now().naive_utc(), clock: Instant::now(), lease: None }
    }
}

/// A maintenance service: one pass at a time, on a schedule.
pub trait Service: Clone + Send + Unpin + 'static {
    /// What one pass did.
    type Outcome: Send + 'static;

    /// Name for logs and the supervisor (`dispatcher`, `watchdog`).
    const NAME: &'static str;

    /// Whether only the elected leader runs it (every maintenance service but the election).
    const LEADER_ONLY: bool = true;

    /// Time between passes; the supervisor judges the service stuck after ten without
    /// progress.
    fn interval(&self) -> Duration;

    /// How long after a pass the next one starts: [`Service::interval`], or less when the
    /// service knows its next work is sooner (the scheduler, before a task's run).
    fn next_pass_in(&self) -> Duration {
        self.interval()
    }

    /// One pass over the store. Blocking.
    fn run_once(&mut self, store: &Store, pass: Pass) -> StoreResult<Self::Outcome>;

    /// Logs what a pass did worth telling (nothing for a pass that changed nothing).
    fn report(outcome: &Self::Outcome, logger: &Logger);
}
