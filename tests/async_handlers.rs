//! Async function handlers (`Runtime::register_async`) on every backend: solidq owns their
//! futures, so a timeout or a cancel drops the future (the handler stops at its next await);
//! a panic in one fails the attempt with its message.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::fixtures::{fast_config, logger};
use common::{backend_test, wait_for, TestDb};
use serde::{Deserialize, Serialize};
use solidq::model::FailureKind;
use solidq::store::manage::Cancelled;
use solidq::{Job, JobError, Runtime};

/// Sleeps `ms` on its first attempt, then returns at once.
#[derive(Serialize, Deserialize)]
struct Fetch {
    first_ms: u64,
    panic: bool,
}

impl Job for Fetch {
    const KIND: &'static str = "test.fetch";
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Option<Duration> = Some(Duration::from_millis(300));
    fn backoff(_: i32) -> Duration {
        Duration::ZERO
    }
}

/// Waits `ms` (no timeout).
#[derive(Serialize, Deserialize)]
struct Wait {
    ms: u64,
}

impl Job for Wait {
    const KIND: &'static str = "test.wait";
}

/// Counts futures dropped before they finished.
struct DropCount(Arc<AtomicUsize>, bool);

impl Drop for DropCount {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[derive(Clone, Default)]
struct Seen {
    started: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

/// Runs a [`Wait`], counting its start and, if its future is dropped before the end, its drop.
async fn wait(seen: Seen, job: Wait) -> Result<(), JobError> {
    seen.started.fetch_add(1, Ordering::SeqCst);
    let mut guard = DropCount(seen.dropped.clone(), false);
    actix_rt::time::sleep(Duration::from_millis(job.ms)).await;
    guard.1 = true;
    Ok(())
}

fn runtime(db: &TestDb, seen: &Seen) -> Runtime {
    let waits = seen.clone();
    let seen = seen.clone();
    Runtime::new(fast_config(db, 3), logger())
        .unwrap()
        .register_async::<Wait, _, _>(move |job, _meta| wait(waits.clone(), job))
        .register_async::<Fetch, _, _>(move |job, meta| {
            let seen = seen.clone();
            async move {
                seen.started.fetch_add(1, Ordering::SeqCst);
                let mut guard = DropCount(seen.dropped.clone(), false);
                if job.panic {
                    panic!("fetch {} exploded", meta.id);
                }
                if meta.attempt == 1 {
                    actix_rt::time::sleep(Duration::from_millis(job.first_ms)).await;
                }
                guard.1 = true;
                Ok::<(), JobError>(())
            }
        })
}

backend_test!(
    async fn a_future_past_its_timeout_is_dropped_and_the_job_retried(db: TestDb) {
        let seen = Seen::default();
        let runtime = runtime(&db, &seen);
        let id = runtime.queue().enqueue(Fetch { first_ms: 5_000, panic: false }).await.unwrap();
        let handle = runtime.start().unwrap();
        wait_for("the retry to finish", Duration::from_secs(10), || db.state(id) == "finished").await;
        let job = db.store.job(id).unwrap().unwrap();
        assert_eq!(job.attempts, 2);
        assert_eq!(job.last_error.unwrap().kind, FailureKind::Timeout);
        assert_eq!(seen.dropped.load(Ordering::SeqCst), 1, "the first attempt's future was dropped, not left running");
        handle.shutdown().await;
    }
);

backend_test!(
    async fn a_cancelled_job_has_its_future_dropped(db: TestDb) {
        let seen = Seen::default();
        let runtime = runtime(&db, &seen);
        let id = runtime.queue().enqueue(Wait { ms: 30_000 }).await.unwrap();
        let handle = runtime.start().unwrap();
        wait_for("the job to start", Duration::from_secs(10), || seen.started.load(Ordering::SeqCst) == 1).await;
        assert_eq!(db.store.cancel_job(id, Utc::now().naive_utc()).unwrap(), Cancelled::Requested);
        wait_for("the job to end cancelled", Duration::from_secs(10), || db.state(id) == "cancelled").await;
        assert_eq!(seen.dropped.load(Ordering::SeqCst), 1, "its future was dropped, not left sleeping");
        handle.shutdown().await;
    }
);

backend_test!(
    async fn a_panic_in_a_future_fails_the_attempt_with_its_message(db: TestDb) {
        let seen = Seen::default();
        let runtime = runtime(&db, &seen);
        let id = runtime
            .queue()
            .enqueue_with(Fetch { first_ms: 0, panic: true }, solidq::EnqueueOptions::new().max_attempts(1))
            .await
            .unwrap();
        let handle = runtime.start().unwrap();
        wait_for("the job to fail", Duration::from_secs(10), || db.state(id) == "failed").await;
        let error = db.store.job(id).unwrap().unwrap().last_error.unwrap();
        assert_eq!(error.kind, FailureKind::Panic);
        assert!(error.message.contains(&format!("fetch {id} exploded")), "{error:?}");
        // The runtime goes on: a later job runs.
        let next = handle.queue().enqueue(Fetch { first_ms: 0, panic: false }).await.unwrap();
        wait_for("the next job", Duration::from_secs(10), || db.state(next) == "finished").await;
        handle.shutdown().await;
    }
);

backend_test!(
    async fn a_drain_that_runs_out_of_time_gives_the_job_back_uncounted(db: TestDb) {
        let seen = Seen::default();
        let waits = seen.clone();
        let mut config = fast_config(&db, 3);
        config.shutdown_timeout = Duration::from_millis(200);
        let runtime = Runtime::new(config, logger())
            .unwrap()
            .register_async::<Wait, _, _>(move |job, _meta| wait(waits.clone(), job));
        let id = runtime.queue().enqueue(Wait { ms: 30_000 }).await.unwrap();
        let handle = runtime.start().unwrap();
        wait_for("the job to start", Duration::from_secs(10), || seen.started.load(Ordering::SeqCst) == 1).await;
        handle.shutdown().await;
        let job = db.store.job(id).unwrap().unwrap();
        assert_eq!(job.state, Some(solidq::JobState::Ready), "a drain is not a cancel: {job:?}");
        assert_eq!(job.attempts, 0);
    }
);
