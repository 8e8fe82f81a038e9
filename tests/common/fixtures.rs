//! Test jobs and handlers shared by the runtime tests, and their logger.

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

/// A numbered job that sleeps `sleep_ms` without blocking its handler's thread.
#[derive(Serialize, Deserialize)]
pub struct Tick {
    /// Which job it is.
    pub n: i64,
    /// How long it runs.
    pub sleep_ms: u64,
}

impl Job for Tick {
    const KIND: &'static str = "test.tick";
}

/// Every execution of a [`Tick`]: its number and when it started.
pub type Executions = Arc<Mutex<Vec<(i64, Instant)>>>;

/// Runs [`Tick`] jobs and records every execution.
pub struct Ticker {
    /// Where executions are recorded.
    pub seen: Executions,
}

impl Actor for Ticker {
    type Context = Context<Self>;
}

impl Handler<Perform<Tick>> for Ticker {
    type Result = ResponseFuture<Result<(), JobError>>;
    fn handle(&mut self, msg: Perform<Tick>, _: &mut Context<Self>) -> Self::Result {
        self.seen.lock().unwrap().push((msg.job.n, Instant::now()));
        Box::pin(async move {
            actix_rt::time::sleep(Duration::from_millis(msg.job.sleep_ms)).await;
            Ok(())
        })
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
