//! The actors of a solidq process. The [`supervisor::Supervisor`] starts and restarts the
//! others.
//!
//! A job's path: [`worker::Worker`] claims it into the process's [`claim_book::ClaimBook`],
//! the [`crate::registry::Registry`] hands it to the application's handler actor, and the
//! [`completer::Completer`] writes how it ended. Meanwhile [`heartbeat::Heartbeat`] stamps the
//! process row, and [`periodic::Periodic`] runs the maintenance services (the dispatcher moves
//! due scheduled jobs to ready, the watchdog hands back the jobs of dead processes).
//! The scheduler of recurring tasks is one of those maintenance services.
//!
//! Each actor's file declares the messages it receives, and a child declares the notifications
//! it sends up to the supervisor (so that no child depends on its supervisor); the three that
//! every child of the supervisor receives ([`SetProcess`], [`Ping`], [`StopChild`]) are here.

pub(crate) mod claim_book;
pub(crate) mod completer;
pub(crate) mod heartbeat;
pub(crate) mod periodic;
pub(crate) mod supervisor;
pub(crate) mod worker;

use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::model::ProcessId;
use crate::store::{SharedStore, Store, StoreResult};

/// Supervisor → every child: the process id to work for; `None` while the process is not yet
/// registered.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct SetProcess(pub Option<ProcessId>);

/// Supervisor → child: when did your loop last make progress? A child that does not answer
/// in time, or whose answer is too old while the process ran, is stuck and gets replaced.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Instant")]
pub(crate) struct Ping;

/// Supervisor → child: stop now (replacement or final shutdown).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct StopChild;

/// Runs a blocking store call on the blocking pool, off the actor's event loop.
pub(crate) fn blocking<T, F>(
    store: &SharedStore,
    call: F,
) -> impl std::future::Future<Output = StoreResult<T>> + 'static
where
    T: Send + 'static,
    F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
{
    let store = store.clone();
    async move {
        match actix_rt::task::spawn_blocking(move || call(store.as_ref())).await {
            Ok(result) => result,
            Err(join) => Err(crate::store::StoreError::Connection {
                action: "running a database call",
                message: if join.is_panic() { "the database call panicked".into() } else { "cancelled".into() },
            }),
        }
    }
}

/// Exponential backoff for failing database calls: `start` doubling up to `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    start: Duration,
    max: Duration,
    current: Option<Duration>,
    /// Consecutive failures so far.
    pub failures: u32,
}

impl Backoff {
    pub(crate) fn new(start: Duration, max: Duration) -> Self {
        Backoff { start, max, current: None, failures: 0 }
    }

    /// Records a failure; returns the delay before the next try.
    pub(crate) fn fail(&mut self) -> Duration {
        self.failures += 1;
        let next = match self.current {
            None => self.start,
            Some(d) => (d * 2).min(self.max),
        };
        self.current = Some(next);
        next
    }

    /// Records a success; returns how many failures preceded it.
    pub(crate) fn succeed(&mut self) -> u32 {
        self.current = None;
        std::mem::take(&mut self.failures)
    }

    /// Whether this failure count is worth a log line: the 1st, 2nd, 4th, 8th, ...
    pub(crate) fn should_log(&self) -> bool {
        self.failures.is_power_of_two()
    }
}

/// Longest wait between retries of a claim or an outcome write the database refused: jobs wait
/// on these, so they come back soon after the database does.
pub(crate) const HOT_PATH_MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait between maintenance passes that failed: nothing waits on one pass.
pub(crate) const MAINTENANCE_MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Answers the supervisor's [`Ping`] with the time of the actor's last progress (the
/// expression after the actor's type, over `this`) and stops on [`StopChild`]: what every
/// supervised child does alike.
macro_rules! answer_the_supervisor {
    ($actor:ty $(where $generic:ident: $bound:path)?, |$this:ident| $progress:expr) => {
        impl$(<$generic: $bound>)? actix::Handler<$crate::actors::Ping> for $actor {
            type Result = actix::MessageResult<$crate::actors::Ping>;
            fn handle(&mut self, _: $crate::actors::Ping, _: &mut actix::Context<Self>) -> Self::Result {
                let $this = self;
                actix::MessageResult($progress)
            }
        }

        impl$(<$generic: $bound>)? actix::Handler<$crate::actors::StopChild> for $actor {
            type Result = ();
            fn handle(&mut self, _: $crate::actors::StopChild, ctx: &mut actix::Context<Self>) {
                actix::ActorContext::stop(ctx);
            }
        }
    };
}
pub(crate) use answer_the_supervisor;

/// Bookkeeping of a periodic database call: one at a time, backoff after failures (logged on
/// the 1st, 2nd, 4th, 8th... failure rather than on every poll), and the time of the last
/// completed pass for the supervisor's stuck check.
#[derive(Debug)]
pub(crate) struct PeriodicCall {
    in_progress: bool,
    errors: Backoff,
    retry_at: Option<std::time::Instant>,
    /// When the loop last completed a pass or decided there was nothing to do.
    pub last_progress: std::time::Instant,
}

impl PeriodicCall {
    pub(crate) fn new(max_backoff: Duration) -> Self {
        PeriodicCall {
            in_progress: false,
            errors: Backoff::new(Duration::from_millis(100), max_backoff),
            retry_at: None,
            last_progress: std::time::Instant::now(),
        }
    }

    /// Whether a new call may start now; marks it started if so.
    pub(crate) fn begin(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self.in_progress || self.retry_at.is_some_and(|at| now < at) {
            if !self.in_progress {
                self.last_progress = now;
            }
            return false;
        }
        self.in_progress = true;
        true
    }

    /// Whether a call is under way.
    pub(crate) fn running(&self) -> bool {
        self.in_progress
    }

    /// Marks an idle pass (nothing to do) as progress.
    pub(crate) fn idle(&mut self) {
        self.last_progress = std::time::Instant::now();
    }

    /// Whether the database is currently failing (a backoff is running).
    pub(crate) fn failing(&self) -> bool {
        self.errors.failures > 0
    }

    /// Ends a running backoff: the next call may start at once.
    pub(crate) fn retry_now(&mut self) {
        self.retry_at = None;
    }

    /// When the running backoff ends, if one is running.
    pub(crate) fn retry_at(&self) -> Option<std::time::Instant> {
        self.retry_at
    }

    /// Whether the call may run now (no call under way, no backoff running), without starting it.
    pub(crate) fn may_run(&self) -> bool {
        !self.in_progress && self.retry_at.is_none_or(|at| std::time::Instant::now() >= at)
    }

    /// Records a completed call; logs recovery after failures.
    pub(crate) fn succeeded(&mut self, logger: &slog::Logger) {
        self.in_progress = false;
        self.retry_at = None;
        self.last_progress = std::time::Instant::now();
        let failures = self.errors.succeed();
        if failures > 0 {
            slog::info!(logger, "database reachable again"; "failed_attempts" => failures);
        }
    }

    /// Records a failed call and starts a backoff; logs with backoff too.
    pub(crate) fn failed(&mut self, logger: &slog::Logger, action: &str, err: &dyn std::fmt::Display) {
        self.in_progress = false;
        self.last_progress = std::time::Instant::now();
        let delay = self.errors.fail();
        self.retry_at = Some(std::time::Instant::now() + delay);
        if self.errors.should_log() {
            slog::error!(logger, "database call failed, backing off"; "action" => action, "error" => %err,
                "failures" => self.errors.failures, "retry_in_ms" => delay.as_millis() as u64);
        }
    }
}
