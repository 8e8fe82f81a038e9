//! Test jobs and handlers shared by the runtime tests, and their logger. A test whose handler
//! must do something of its own (count dropped futures, keep tokens, block an async actor's
//! thread, kill its process) keeps it beside the test.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use solidq::{Job, JobError, Perform};

/// A runtime configuration for `db` with fast intervals, so that every test finishes in a few
/// seconds: one worker group for every queue with `concurrency` slots.
pub fn fast_config(db: &super::TestDb, concurrency: usize) -> solidq::Config {
    solidq::Config {
        database_url: db.url.clone(),
        pool_size: 4,
        workers: vec![solidq::config::WorkerGroup { queues: vec![solidq::model::QueuePattern::All], concurrency }],
        polling_interval: Duration::from_millis(20),
        dispatcher_polling_interval: Duration::from_millis(50),
        heartbeat_interval: Duration::from_millis(100),
        alive_threshold: Duration::from_secs(3),
        watchdog_interval: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(5),
        ..solidq::Config::default()
    }
}

/// A job that does nothing.
#[derive(Serialize, Deserialize)]
pub struct Noop(pub u32);

impl Job for Noop {
    const KIND: &'static str = "test.noop";
}

/// Runs [`Noop`] jobs.
pub struct NoopHandler;

impl Actor for NoopHandler {
    type Context = Context<Self>;
}

impl Handler<Perform<Noop>> for NoopHandler {
    type Result = Result<(), JobError>;
    fn handle(&mut self, _: Perform<Noop>, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}

/// A numbered job for an async actor: its handler panics if asked, or else sleeps `sleep_ms`
/// without blocking its thread. A failed attempt is retried at once (no backoff).
#[derive(Serialize, Deserialize)]
pub struct Step {
    /// Which job it is.
    pub n: i64,
    /// Whether its handler panics (with `step {n} exploded`) instead of sleeping.
    pub panic: bool,
    /// How long it runs.
    pub sleep_ms: u64,
}

impl Job for Step {
    const KIND: &'static str = "test.step";
    fn backoff(_: i32) -> Duration {
        Duration::ZERO
    }
}

/// Every execution of a [`Step`]: its number and when it started.
pub type Executions = Arc<Mutex<Vec<(i64, Instant)>>>;

/// The numbers of the recorded executions, in the order they started.
pub fn numbers(seen: &Executions) -> Vec<i64> {
    seen.lock().unwrap().iter().map(|(n, _)| *n).collect()
}

/// Runs [`Step`] jobs (a `ResponseFuture` handler: several at once) and records every
/// execution, a panicking one included.
pub struct Stepper {
    /// Where executions are recorded.
    pub seen: Executions,
}

impl Actor for Stepper {
    type Context = Context<Self>;
}

impl Handler<Perform<Step>> for Stepper {
    type Result = ResponseFuture<Result<(), JobError>>;
    fn handle(&mut self, msg: Perform<Step>, _: &mut Context<Self>) -> Self::Result {
        self.seen.lock().unwrap().push((msg.job.n, Instant::now()));
        if msg.job.panic {
            panic!("step {} exploded", msg.job.n);
        }
        Box::pin(async move {
            actix_rt::time::sleep(Duration::from_millis(msg.job.sleep_ms)).await;
            Ok(())
        })
    }
}

/// A numbered job for a blocking actor (`register_sync`): its handler blocks its thread for
/// `sleep_ms`, then panics if asked.
#[derive(Serialize, Deserialize)]
pub struct Blocking {
    /// Which job it is.
    pub n: i64,
    /// Whether its handler panics (with `blocking {n} exploded`) after sleeping.
    pub panic: bool,
    /// How long it blocks its thread.
    pub sleep_ms: u64,
}

impl Job for Blocking {
    const KIND: &'static str = "test.blocking";
}

/// Runs [`Blocking`] jobs on a `SyncArbiter` thread.
pub struct BlockingWorker;

impl Actor for BlockingWorker {
    type Context = SyncContext<Self>;
}

impl Handler<Perform<Blocking>> for BlockingWorker {
    type Result = Result<(), JobError>;
    fn handle(&mut self, msg: Perform<Blocking>, _: &mut SyncContext<Self>) -> Self::Result {
        std::thread::sleep(Duration::from_millis(msg.job.sleep_ms));
        if msg.job.panic {
            panic!("blocking {} exploded", msg.job.n);
        }
        Ok(())
    }
}

/// A logger that discards, or prints to stderr when `SOLIDQ_TEST_LOG` is set.
pub fn logger() -> slog::Logger {
    use slog::Drain;
    if std::env::var_os("SOLIDQ_TEST_LOG").is_some() {
        let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
        let drain = slog_term::FullFormat::new(decorator).build().fuse();
        slog::Logger::root(drain, slog::o!())
    } else {
        slog::Logger::root(slog::Discard, slog::o!())
    }
}
