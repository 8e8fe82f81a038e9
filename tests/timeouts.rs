//! Timeouts and cancellation on every backend: a handler past its kind's timeout is retried
//! with a `Timeout` error; a blocking handler stuck past it frees its slot and its late result
//! changes nothing; `solidq status` shows the abandoned execution until it returns; an
//! operator's cancel reaches a running handler through its token, and the job ends cancelled
//! whether or not the handler listens.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use common::fixtures::{fast_config, logger};
use common::{backend_test, wait_for, TestDb};
use futures_util::future::{select, Either};
use serde::{Deserialize, Serialize};
use solidq::model::FailureKind;
use solidq::store::manage::Cancelled;
use solidq::{CancelReason, Cancellation, EnqueueOptions, Job, JobError, Perform, Runtime};

// --- an async handler slower than its timeout on the first attempt ---------------------------

#[derive(Serialize, Deserialize)]
struct Slowish {
    first_ms: u64,
}

impl Job for Slowish {
    const KIND: &'static str = "test.slowish";
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Option<Duration> = Some(Duration::from_millis(300));
    fn backoff(_: i32) -> Duration {
        Duration::ZERO
    }
}

/// Sleeps `first_ms` on the first attempt (ignoring its token), returns at once afterwards;
/// keeps every execution's token.
struct SlowishHandler {
    tokens: Arc<Mutex<Vec<(i32, Cancellation)>>>,
}

impl Actor for SlowishHandler {
    type Context = Context<Self>;
}

impl Handler<Perform<Slowish>> for SlowishHandler {
    type Result = ResponseFuture<Result<(), JobError>>;
    fn handle(&mut self, msg: Perform<Slowish>, _: &mut Context<Self>) -> Self::Result {
        self.tokens.lock().unwrap().push((msg.meta.attempt, msg.meta.cancellation.clone()));
        Box::pin(async move {
            if msg.meta.attempt == 1 {
                actix_rt::time::sleep(Duration::from_millis(msg.job.first_ms)).await;
            }
            Ok(())
        })
    }
}

backend_test!(
    async fn async_handler_past_its_timeout_is_retried_and_succeeds_later(db: TestDb) {
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let seen = tokens.clone();
        let runtime = Runtime::new(fast_config(&db, 3), logger())
            .unwrap()
            .register::<Slowish, _, _>(move || SlowishHandler { tokens: seen.clone() });
        let id = runtime.queue().enqueue(Slowish { first_ms: 2_000 }).await.unwrap();
        let started = Instant::now();
        let handle = runtime.start().unwrap();
        wait_for("the retry to succeed", Duration::from_secs(10), || db.state(id) == "finished").await;
        assert!(started.elapsed() < Duration::from_millis(1_900), "the retry did not wait for the first attempt");
        let job = db.store.job(id).unwrap().unwrap();
        assert_eq!(job.attempts, 2);
        let error = job.last_error.expect("the timeout is recorded");
        assert_eq!(error.kind, FailureKind::Timeout);
        assert!(error.message.contains("ran past its timeout of 300ms"), "{error:?}");
        let tokens = tokens.lock().unwrap().clone();
        assert_eq!(tokens.iter().map(|(attempt, _)| *attempt).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(tokens[0].1.reason(), Some(CancelReason::Timeout), "the first execution was told");
        assert_eq!(tokens[1].1.reason(), None, "each execution has its own token");
        handle.shutdown().await;
    }
);

// --- a blocking handler stuck in its thread ------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Stuck {
    n: i64,
    sleep_ms: u64,
}

impl Job for Stuck {
    const KIND: &'static str = "test.stuck";
    const MAX_ATTEMPTS: i32 = 1;
    const TIMEOUT: Option<Duration> = Some(Duration::from_millis(300));
}

#[derive(Default)]
struct StuckLog {
    finished: Mutex<Vec<(i64, Instant)>>,
    stuck_returned: AtomicBool,
    threads: AtomicUsize,
}

struct StuckWorker(Arc<StuckLog>);

impl Actor for StuckWorker {
    type Context = SyncContext<Self>;
}

impl Handler<Perform<Stuck>> for StuckWorker {
    type Result = Result<(), JobError>;
    fn handle(&mut self, msg: Perform<Stuck>, _: &mut SyncContext<Self>) -> Self::Result {
        std::thread::sleep(Duration::from_millis(msg.job.sleep_ms));
        self.0.finished.lock().unwrap().push((msg.job.n, Instant::now()));
        if msg.job.sleep_ms > 1_000 {
            self.0.stuck_returned.store(true, Ordering::SeqCst);
        }
        Ok(())
    }
}

backend_test!(
    async fn blocking_handler_stuck_past_its_timeout_frees_its_slot_and_status_shows_it(db: TestDb) {
        let log = Arc::new(StuckLog::default());
        let factory_log = log.clone();
        let runtime = Runtime::new(fast_config(&db, 1), logger()).unwrap().register_sync::<Stuck, _, _>(1, move || {
            factory_log.threads.fetch_add(1, Ordering::SeqCst);
            StuckWorker(factory_log.clone())
        });
        let queue = runtime.queue();
        let stuck =
            queue.enqueue_with(Stuck { n: 1, sleep_ms: 4_000 }, EnqueueOptions::new().priority(-1)).await.unwrap();
        let next = queue.enqueue(Stuck { n: 2, sleep_ms: 10 }).await.unwrap();
        let handle = runtime.start().unwrap();

        wait_for("the stuck job to time out", Duration::from_secs(10), || db.state(stuck) == "failed").await;
        let error = db.store.job(stuck).unwrap().unwrap().last_error.unwrap();
        assert_eq!(error.kind, FailureKind::Timeout, "{error:?}");
        wait_for("the next job, on a new pool", Duration::from_secs(3), || db.state(next) == "finished").await;
        assert!(!log.stuck_returned.load(Ordering::SeqCst), "the next job did not wait for the stuck thread");
        assert_eq!(log.threads.load(Ordering::SeqCst), 2, "one replacement thread");

        // `solidq status` (reading only the database) shows the abandoned execution.
        let process = handle.process_id().await.unwrap();
        wait_for("status to show the abandoned execution", Duration::from_secs(3), || {
            let text = solidq::status::status_text(&db.store, Duration::from_secs(3)).unwrap();
            text.contains("Abandoned executions (ran past their timeout, handler still running): 1")
                && text.contains("test.stuck")
        })
        .await;
        let row = db.store.processes().unwrap().into_iter().find(|p| p.id == process).unwrap();
        let abandoned = row.metadata.abandoned();
        assert_eq!((abandoned.count, abandoned.job_ids()), (1, vec![stuck]));
        assert_eq!(abandoned.executions[0].kind, "test.stuck");
        assert_eq!(abandoned.executions[0].timeout_secs, 0.3);

        // The stuck thread returns Ok: its result is dropped, and the entry is cleared.
        wait_for("the stuck thread to return", Duration::from_secs(10), || log.stuck_returned.load(Ordering::SeqCst))
            .await;
        wait_for("status to forget it", Duration::from_secs(3), || {
            let row = db.store.processes().unwrap().into_iter().find(|p| p.id == process).unwrap();
            row.metadata.abandoned().count == 0
        })
        .await;
        let job = db.store.job(stuck).unwrap().unwrap();
        assert_eq!((db.state(stuck).as_str(), job.attempts), ("failed", 1), "the late result changed nothing");
        assert_eq!(job.last_error.unwrap().kind, FailureKind::Timeout);
        let text = solidq::status::status_text(&db.store, Duration::from_secs(3)).unwrap();
        assert!(!text.contains("Abandoned"), "{text}");
        handle.shutdown().await;
    }
);

// --- an async actor blocking its arbiter's thread ---------------------------------------------

#[derive(Serialize, Deserialize)]
struct Hog {
    n: i64,
    block_ms: u64,
}

impl Job for Hog {
    const KIND: &'static str = "test.hog";
    const MAX_ATTEMPTS: i32 = 1;
    const TIMEOUT: Option<Duration> = Some(Duration::from_millis(300));
}

/// An async actor whose handler blocks its thread (what it should not do).
struct HogHandler(Arc<Mutex<Vec<(i64, Instant)>>>);

impl Actor for HogHandler {
    type Context = Context<Self>;
}

impl Handler<Perform<Hog>> for HogHandler {
    type Result = Result<(), JobError>;
    fn handle(&mut self, msg: Perform<Hog>, _: &mut Context<Self>) -> Self::Result {
        std::thread::sleep(Duration::from_millis(msg.job.block_ms));
        self.0.lock().unwrap().push((msg.job.n, Instant::now()));
        Ok(())
    }
}

backend_test!(
    async fn async_actor_blocking_its_thread_past_its_timeout_moves_to_a_new_arbiter(db: TestDb) {
        let done = Arc::new(Mutex::new(Vec::new()));
        let seen = done.clone();
        let runtime = Runtime::new(fast_config(&db, 1), logger())
            .unwrap()
            .register::<Hog, _, _>(move || HogHandler(seen.clone()));
        let queue = runtime.queue();
        let hog = queue.enqueue_with(Hog { n: 1, block_ms: 2_500 }, EnqueueOptions::new().priority(-1)).await.unwrap();
        let next = queue.enqueue(Hog { n: 2, block_ms: 0 }).await.unwrap();
        let handle = runtime.start().unwrap();
        wait_for("the blocking job to time out", Duration::from_secs(10), || db.state(hog) == "failed").await;
        wait_for("the next job, on a new arbiter", Duration::from_secs(3), || db.state(next) == "finished").await;
        assert_eq!(done.lock().unwrap().iter().map(|(n, _)| *n).collect::<Vec<_>>(), [2], "the blocked one still runs");
        wait_for("the blocked thread to return", Duration::from_secs(10), || done.lock().unwrap().len() == 2).await;
        assert_eq!(db.state(hog), "failed", "its late result changed nothing");
        handle.shutdown().await;
    }
);

// --- cancelling a running job -------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Long {
    listen: bool,
    run_ms: u64,
}

impl Job for Long {
    const KIND: &'static str = "test.long";
}

#[derive(Default)]
struct LongLog {
    /// How each execution ended: `true` if it stopped because its token fired.
    ended: Mutex<Vec<(bool, Option<CancelReason>)>>,
}

struct LongHandler(Arc<LongLog>);

impl Actor for LongHandler {
    type Context = Context<Self>;
}

impl Handler<Perform<Long>> for LongHandler {
    type Result = ResponseFuture<Result<(), JobError>>;
    fn handle(&mut self, msg: Perform<Long>, _: &mut Context<Self>) -> Self::Result {
        let (log, token) = (self.0.clone(), msg.meta.cancellation.clone());
        Box::pin(async move {
            let work = Box::pin(actix_rt::time::sleep(Duration::from_millis(msg.job.run_ms)));
            let stopped = if msg.job.listen {
                matches!(select(work, Box::pin(token.cancelled())).await, Either::Right(_))
            } else {
                work.await;
                false
            };
            log.ended.lock().unwrap().push((stopped, token.reason()));
            // What it returns does not matter: the job ends cancelled.
            if stopped {
                Err(JobError::new("stopped on request"))
            } else {
                Ok(())
            }
        })
    }
}

async fn cancel_running(db: &TestDb, listen: bool, run_ms: u64) -> (i64, Arc<LongLog>, Instant, solidq::RuntimeHandle) {
    let log = Arc::new(LongLog::default());
    let handler_log = log.clone();
    let runtime = Runtime::new(fast_config(db, 3), logger())
        .unwrap()
        .register::<Long, _, _>(move || LongHandler(handler_log.clone()));
    let id = runtime.queue().enqueue(Long { listen, run_ms }).await.unwrap();
    let handle = runtime.start().unwrap();
    wait_for("the job to run", Duration::from_secs(10), || db.state(id) == "claimed").await;
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(db.store.cancel_job(id, Utc::now().naive_utc()).unwrap(), Cancelled::Requested);
    (id, log, Instant::now(), handle)
}

backend_test!(
    async fn handler_watching_its_token_stops_when_its_job_is_cancelled(db: TestDb) {
        let (id, log, asked, handle) = cancel_running(&db, true, 20_000).await;
        wait_for("the job to end cancelled", Duration::from_secs(5), || db.state(id) == "cancelled").await;
        assert!(asked.elapsed() < Duration::from_secs(3), "told within about a second");
        assert_eq!(*log.ended.lock().unwrap(), [(true, Some(CancelReason::Cancelled))]);
        handle.shutdown().await;
    }
);

backend_test!(
    async fn handler_ignoring_its_token_runs_to_its_end_and_the_job_ends_cancelled(db: TestDb) {
        let (id, log, asked, handle) = cancel_running(&db, false, 2_000).await;
        wait_for("the job to end cancelled", Duration::from_secs(6), || db.state(id) == "cancelled").await;
        assert!(asked.elapsed() >= Duration::from_millis(1_500), "it ran to its end: {:?}", asked.elapsed());
        let ended = log.ended.lock().unwrap().clone();
        assert_eq!(ended, [(false, Some(CancelReason::Cancelled))], "its token fired; it returned Ok all the same");
        handle.shutdown().await;
    }
);
