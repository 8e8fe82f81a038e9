//! The actors of a solidq process. The [`supervisor::Supervisor`] starts and restarts the
//! others; each periodic actor calls one store function per tick and logs its outcome.
//!
//! A job's path: [`worker::Worker`] claims it, the [`crate::registry::Registry`] hands it to the
//! application's handler actor, the worker records the outcome. Meanwhile
//! [`heartbeat::Heartbeat`] stamps the process row, [`dispatcher::Dispatcher`] moves due
//! scheduled jobs to ready and [`watchdog::Watchdog`] hands back the jobs of dead processes.

pub mod claim_book;
pub mod completer;
pub mod dispatcher;
pub mod heartbeat;
pub mod messages;
pub mod supervisor;
pub mod watchdog;
pub mod worker;

use std::time::Duration;

use crate::store::{SharedStore, StoreResult};

/// Runs a blocking store call on the blocking pool, off the actor's event loop.
pub(crate) fn blocking<T, F>(
    store: &SharedStore,
    call: F,
) -> impl std::future::Future<Output = StoreResult<T>> + 'static
where
    T: Send + 'static,
    F: FnOnce(&dyn crate::store::Store) -> StoreResult<T> + Send + 'static,
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

/// How long [`StoppedArbiters::join`] waits for the threads of stopped arbiters.
pub const THREAD_JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The arbiters the runtime stopped, kept so that shutdown can join their threads.
///
/// Stopping an arbiter only asks its thread to end: the thread then drops its actors and waits
/// for its blocking pool (database calls still under way, TLS connections closing). A process
/// that calls `exit()` meanwhile runs OpenSSL's atexit cleanup while those threads are still
/// inside libpq/OpenSSL or exiting (their OpenSSL thread-state destructors), which crashes the
/// process with SIGSEGV in libcrypto. So `run()` and `shutdown()` join them before returning.
#[derive(Clone, Default)]
pub struct StoppedArbiters(std::sync::Arc<std::sync::Mutex<Vec<actix::Arbiter>>>);

impl StoppedArbiters {
    /// Stops `arbiter` and keeps it for [`StoppedArbiters::join`].
    pub fn stop(&self, arbiter: actix::Arbiter) {
        arbiter.stop();
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(arbiter);
    }

    /// Waits up to `timeout` for the threads of every arbiter stopped so far to end; returns
    /// how many were still running when it gave up (they are then left to themselves).
    pub fn join(&self, timeout: Duration) -> usize {
        let arbiters = std::mem::take(&mut *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let total = arbiters.len();
        if total == 0 {
            return 0;
        }
        let (done, joined) = std::sync::mpsc::channel();
        // `Arbiter::join` has no timeout: join on a helper thread, wait for it here.
        let spawned = std::thread::Builder::new().name("solidq-join".into()).spawn(move || {
            for arbiter in arbiters {
                let _ = arbiter.join();
                let _ = done.send(());
            }
        });
        if spawned.is_err() {
            return total;
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut left = total;
        while left > 0 {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            match joined.recv_timeout(wait) {
                Ok(()) => left -= 1,
                Err(_) => break,
            }
        }
        left
    }
}
