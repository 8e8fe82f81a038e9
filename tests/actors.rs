//! Runtime wiring on every backend: handler panics and restarts, retries, unknown kinds,
//! heartbeats, the watchdog, fenced late finishes, and graceful shutdown.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use common::TestDb;
use serde::{Deserialize, Serialize};
use solidq::config::{Config, WorkerGroup};
use solidq::model::{ClaimedJob, DeathPolicy, FailureKind, FailureRecord, NewProcess, QueuePattern};
use solidq::store::DeathCause;
use solidq::{EnqueueOptions, Job, JobError, NewJob, Perform, Runtime};

use common::fixtures::{logger, numbers, Blocking, BlockingWorker, Executions, Step, Stepper};

/// The shared fast configuration with three slots.
fn fast_config(db: &TestDb) -> Config {
    common::fixtures::fast_config(db, 3)
}
use common::{backend_test, wait_for};

fn state(db: &TestDb, id: i64) -> String {
    db.state(id)
}

fn last_error(db: &TestDb, id: i64) -> FailureRecord {
    db.store.job(id).unwrap().and_then(|j| j.last_error).expect("a recorded error")
}

// --- jobs and handlers used below ------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Flaky;

impl Job for Flaky {
    const KIND: &'static str = "test.flaky";
    const MAX_ATTEMPTS: i32 = 3;
    fn backoff(_: i32) -> Duration {
        Duration::ZERO
    }
}

struct FlakyHandler {
    runs: Arc<AtomicUsize>,
}

impl Actor for FlakyHandler {
    type Context = Context<Self>;
}

impl Handler<Perform<Flaky>> for FlakyHandler {
    type Result = Result<(), JobError>;
    fn handle(&mut self, msg: Perform<Flaky>, _: &mut Context<Self>) -> Self::Result {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Err(JobError::new(format!("smtp timeout on attempt {}", msg.meta.attempt)))
    }
}

fn step(n: i64, panic: bool, sleep_ms: u64, opts: EnqueueOptions) -> NewJob {
    NewJob::from_job(&Step { n, panic, sleep_ms }, opts).unwrap()
}

fn stepper_runtime(_db: &TestDb, config: Config, seen: &Executions) -> Runtime {
    let seen = seen.clone();
    Runtime::new(config, logger()).unwrap().register::<Step, _, _>(move || Stepper { seen: seen.clone() })
}

// --- the behaviours ----------------------------------------------------------------------------

backend_test!(
    async fn handler_panic_fails_job_with_message_and_next_job_runs(db: TestDb) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let runtime = stepper_runtime(&db, fast_config(&db), &seen);
        let queue = runtime.queue();
        let boom = queue
            .enqueue_with(Step { n: 1, panic: true, sleep_ms: 0 }, EnqueueOptions::new().max_attempts(1))
            .await
            .unwrap();
        let handle = runtime.start().unwrap();
        wait_for("the panicking job to fail", Duration::from_secs(10), || state(&db, boom) == "failed").await;
        let error = last_error(&db, boom);
        assert_eq!(error.kind, FailureKind::Panic);
        assert!(error.message.contains("step 1 exploded"), "message was {:?}", error.message);
        assert!(error.backtrace.as_deref().is_some_and(|at| at.starts_with("tests/common/fixtures.rs:")), "{error:?}");
        // The actor was replaced: later jobs of the same kind still run.
        let next = queue.enqueue(Step { n: 2, panic: false, sleep_ms: 0 }).await.unwrap();
        wait_for("the next job to finish", Duration::from_secs(10), || state(&db, next) == "finished").await;
        assert_eq!(numbers(&seen), vec![1, 2]);
        handle.shutdown().await;
    }
);

backend_test!(
    async fn blocking_handler_panic_fails_job_and_pool_is_replaced(db: TestDb) {
        let runtime =
            Runtime::new(fast_config(&db), logger()).unwrap().register_sync::<Blocking, _, _>(2, || BlockingWorker);
        let queue = runtime.queue();
        let boom = queue
            .enqueue_with(Blocking { n: 1, panic: true, sleep_ms: 10 }, EnqueueOptions::new().max_attempts(1))
            .await
            .unwrap();
        let handle = runtime.start().unwrap();
        wait_for("the panicking job to fail", Duration::from_secs(10), || state(&db, boom) == "failed").await;
        assert!(last_error(&db, boom).message.contains("blocking 1 exploded"));
        let ids = queue.enqueue_all((2..8).map(|n| Blocking { n, panic: false, sleep_ms: 10 })).await.unwrap();
        wait_for("the other jobs to finish", Duration::from_secs(10), || {
            ids.iter().all(|id| state(&db, *id) == "finished")
        })
        .await;
        handle.shutdown().await;
    }
);

backend_test!(
    async fn panic_with_attempts_left_is_retried(db: TestDb) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let runtime = stepper_runtime(&db, fast_config(&db), &seen);
        let id = runtime
            .queue()
            .enqueue_with(Step { n: 5, panic: true, sleep_ms: 0 }, EnqueueOptions::new().max_attempts(2))
            .await
            .unwrap();
        let handle = runtime.start().unwrap();
        wait_for("both attempts to fail", Duration::from_secs(10), || state(&db, id) == "failed").await;
        assert_eq!(numbers(&seen), vec![5, 5]);
        assert_eq!(db.store.job(id).unwrap().unwrap().attempts, 2);
        handle.shutdown().await;
    }
);

backend_test!(
    async fn handler_error_retries_until_max_attempts_then_fails(db: TestDb) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let runtime = Runtime::new(fast_config(&db), logger())
            .unwrap()
            .register::<Flaky, _, _>(move || FlakyHandler { runs: counter.clone() });
        let id = runtime.queue().enqueue(Flaky).await.unwrap();
        let handle = runtime.start().unwrap();
        wait_for("the job to fail for good", Duration::from_secs(10), || state(&db, id) == "failed").await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let error = last_error(&db, id);
        assert_eq!(error.kind, FailureKind::Error);
        assert!(error.message.contains("attempt 3"));
        handle.shutdown().await;
    }
);

backend_test!(
    /// A job of a kind only a newer release knows (a rolling deploy): the old process leaves it
    /// ready, unattempted, for a process that can run it. Bad arguments fail at once.
    async fn unknown_kind_waits_for_a_process_that_can_run_it_and_bad_arguments_fail(db: TestDb) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let runtime = stepper_runtime(&db, fast_config(&db), &seen);
        let ids = runtime
            .queue()
            .enqueue_new(vec![
                NewJob::from_job(&common::fixtures::Noop(1), EnqueueOptions::new()).unwrap(),
                NewJob::from_json(Step::KIND, serde_json::json!({"n": "not a number"}), EnqueueOptions::new()).unwrap(),
                step(9, false, 0, EnqueueOptions::new().priority(10)),
            ])
            .await
            .unwrap();
        let old_release = runtime.start().unwrap();
        wait_for("the known kinds to end", Duration::from_secs(10), || {
            state(&db, ids[1]) == "failed" && state(&db, ids[2]) == "finished"
        })
        .await;
        let bad = last_error(&db, ids[1]);
        assert_eq!(bad.kind, FailureKind::BadArguments);
        assert!(bad.message.contains(Step::KIND));
        assert_eq!((bad.backtrace, bad.cause), (None, None), "the arguments stay in the job, not in its error");
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        let waiting = db.store.job(ids[0]).unwrap().unwrap();
        assert_eq!((db.state(ids[0]).as_str(), waiting.attempts), ("ready", 0), "left for a process that can run it");
        let status = solidq::status::status_text(&db.store, Duration::from_secs(3)).unwrap();
        assert!(status.contains("Waiting with no live process to run them: 1"), "{status}");
        assert!(
            status.contains("test.noop") && status.contains("no live process has a handler for this kind"),
            "{status}"
        );

        let new_release = Runtime::new(fast_config(&db), logger())
            .unwrap()
            .register::<common::fixtures::Noop, _, _>(|| common::fixtures::NoopHandler)
            .start()
            .unwrap();
        wait_for("the new release to run it", Duration::from_secs(10), || state(&db, ids[0]) == "finished").await;
        assert_eq!(db.store.job(ids[0]).unwrap().unwrap().attempts, 1);
        old_release.shutdown().await;
        new_release.shutdown().await;
    }
);

backend_test!(
    async fn heartbeat_advances(db: TestDb) {
        let runtime = Runtime::new(fast_config(&db), logger()).unwrap();
        let handle = runtime.start().unwrap();
        // The row is written before the supervisor hears of it: wait for both.
        let started = Instant::now();
        let id = loop {
            if let Some(id) = handle.process_id().await {
                break id;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "registration");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        };
        let first = db.store.processes().unwrap()[0].clone();
        assert_eq!(first.id, id);
        wait_for("a newer heartbeat", Duration::from_secs(10), || {
            db.store.processes().unwrap()[0].last_heartbeat_at > first.last_heartbeat_at
        })
        .await;
        handle.shutdown().await;
        assert!(db.store.processes().unwrap().is_empty(), "deregistered on shutdown");
    }
);

fn fake_process(db: &TestDb, heartbeat_age: Duration) -> i64 {
    let then = Utc::now().naive_utc() - chrono::Duration::from_std(heartbeat_age).unwrap();
    let row = NewProcess {
        kind: "Runtime".into(),
        name: format!("ghost-{}", fastrand::u32(..)),
        pid: 1,
        hostname: "elsewhere".into(),
        metadata: Default::default(),
    };
    db.store.register_process(&row, then).unwrap()
}

backend_test!(
    async fn watchdog_reaps_stale_process_and_its_jobs_run_again(db: TestDb) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let runtime = stepper_runtime(&db, fast_config(&db), &seen);
        let id = runtime.queue().enqueue(Step { n: 7, panic: false, sleep_ms: 0 }).await.unwrap();
        let ghost = fake_process(&db, Duration::from_secs(60));
        let claimed: Vec<ClaimedJob> =
            db.store.claim(ghost, &[QueuePattern::All], &[Step::KIND.into()], 10, Utc::now().naive_utc()).unwrap();
        assert_eq!(claimed.len(), 1);
        let handle = runtime.start().unwrap();
        wait_for("the ghost's job to run here", Duration::from_secs(10), || state(&db, id) == "finished").await;
        assert!(db.store.processes().unwrap().iter().all(|p| p.id != ghost), "ghost reaped");
        let job = db.store.job(id).unwrap().unwrap();
        assert_eq!(job.attempts, 2, "the ghost's attempt stays counted");
        assert_eq!(job.last_error.unwrap().kind, FailureKind::ProcessDied);
        handle.shutdown().await;
    }
);

backend_test!(
    async fn pruned_process_late_finish_is_discarded(db: TestDb) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let runtime = stepper_runtime(&db, fast_config(&db), &seen);
        let queue = runtime.queue();
        let handle = runtime.start().unwrap();
        let id = queue.enqueue(Step { n: 3, panic: false, sleep_ms: 600 }).await.unwrap();
        wait_for("the job to be claimed", Duration::from_secs(10), || state(&db, id) == "claimed").await;
        let first = handle.process_id().await.unwrap();
        // Another watchdog decides this process is dead while its job is running.
        let reaped = db
            .store
            .reap_dead(&[(first, DeathCause::Proven("test".into()))], DeathPolicy::Retry, Utc::now().naive_utc())
            .unwrap();
        assert!(reaped.len() == 1 && reaped[0].retried == 1);
        // The process notices its row is gone, registers anew and runs the job again; the first
        // execution's finish arrives with a stale token and changes nothing.
        wait_for("a new identity", Duration::from_secs(10), || {
            db.store.processes().unwrap().iter().any(|p| p.id != first)
        })
        .await;
        wait_for("the second execution to finish", Duration::from_secs(10), || {
            seen.lock().unwrap().len() == 2 && state(&db, id) == "finished"
        })
        .await;
        let job = db.store.job(id).unwrap().unwrap();
        assert_eq!(job.attempts, 2);
        handle.shutdown().await;
    }
);

backend_test!(
    async fn shutdown_drains_running_jobs(db: TestDb) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let runtime = stepper_runtime(&db, fast_config(&db), &seen);
        let queue = runtime.queue();
        let ids = queue.enqueue_all((1..=3).map(|n| Step { n, panic: false, sleep_ms: 500 })).await.unwrap();
        let handle = runtime.start().unwrap();
        wait_for("all three to be claimed", Duration::from_secs(10), || {
            ids.iter().all(|id| state(&db, *id) == "claimed")
        })
        .await;
        let report = handle.shutdown().await;
        assert_eq!((report.abandoned, report.released, report.deregistered), (0, 0, true));
        assert!(ids.iter().all(|id| state(&db, *id) == "finished"));
        assert!(db.store.processes().unwrap().is_empty());
    }
);

backend_test!(
    async fn shutdown_timeout_returns_unfinished_claims_to_ready(db: TestDb) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let config = Config { shutdown_timeout: Duration::from_millis(200), ..fast_config(&db) };
        let runtime = stepper_runtime(&db, config, &seen);
        let ids =
            runtime.queue().enqueue_all((1..=2).map(|n| Step { n, panic: false, sleep_ms: 5_000 })).await.unwrap();
        let handle = runtime.start().unwrap();
        wait_for("both to be claimed", Duration::from_secs(10), || ids.iter().all(|id| state(&db, *id) == "claimed"))
            .await;
        let report = handle.shutdown().await;
        assert_eq!((report.abandoned, report.released, report.deregistered), (2, 2, true));
        assert!(ids.iter().all(|id| state(&db, *id) == "ready"));
        for id in &ids {
            assert_eq!(db.store.job(*id).unwrap().unwrap().attempts, 0, "a run cut short by a drain uses no attempt");
        }
    }
);

backend_test!(
    async fn scheduled_job_runs_when_due(db: TestDb) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let runtime = stepper_runtime(&db, fast_config(&db), &seen);
        let queue = runtime.queue();
        let handle = runtime.start().unwrap();
        let enqueued = Instant::now();
        let id = queue
            .enqueue_with(
                Step { n: 1, panic: false, sleep_ms: 0 },
                EnqueueOptions::new().run_in(Duration::from_millis(700)),
            )
            .await
            .unwrap();
        assert_eq!(state(&db, id), "scheduled");
        wait_for("the scheduled job to finish", Duration::from_secs(10), || state(&db, id) == "finished").await;
        assert!(enqueued.elapsed() >= Duration::from_millis(700));
        handle.shutdown().await;
    }
);

backend_test!(
    async fn worker_groups_take_queues_in_order(db: TestDb) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let config = Config {
            workers: vec![WorkerGroup {
                queues: vec![QueuePattern::Exact("critical".into()), QueuePattern::Prefix("bulk".into())],
                concurrency: 1,
            }],
            ..fast_config(&db)
        };
        let runtime = stepper_runtime(&db, config, &seen);
        let jobs = vec![
            step(1, false, 0, EnqueueOptions::new().queue("bulk-a").priority(-10)),
            step(2, false, 0, EnqueueOptions::new().queue("elsewhere")),
            step(3, false, 0, EnqueueOptions::new().queue("critical").priority(5)),
            step(4, false, 0, EnqueueOptions::new().queue("critical")),
        ];
        let ids = runtime.queue().enqueue_new(jobs).await.unwrap();
        let handle = runtime.start().unwrap();
        wait_for("the matching jobs", Duration::from_secs(10), || seen.lock().unwrap().len() == 3).await;
        assert_eq!(numbers(&seen), vec![4, 3, 1], "queue order, then priority");
        assert_eq!(state(&db, ids[1]), "ready", "a queue no group serves is left alone");
        handle.shutdown().await;
    }
);

/// A SQLite file deleted under a running process (with its -wal and -shm): the process notices
/// on its next heartbeat, logs the path at error level, refuses enqueues with a named error and
/// stops claiming, instead of writing on into an unlinked file whose contents vanish at exit.
#[actix_rt::test]
async fn sqlite_file_deleted_under_a_running_process_is_noticed_and_nothing_more_is_written() {
    let db = TestDb::sqlite();
    let solidq::DatabaseUrl::Sqlite(path) = db.url.clone() else { unreachable!() };
    let log = common::log::LogRecorder::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler_seen = seen.clone();
    let runtime = Runtime::new(fast_config(&db), log.logger())
        .unwrap()
        .register::<Step, _, _>(move || Stepper { seen: handler_seen.clone() });
    let queue = runtime.queue();
    let handle = runtime.start().unwrap();
    let first = queue.enqueue(Step { n: 1, panic: false, sleep_ms: 0 }).await.unwrap();
    wait_for("a first job to run", Duration::from_secs(10), || db.state(first) == "finished").await;

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let refused = queue.enqueue(Step { n: 2, panic: false, sleep_ms: 0 }).await.unwrap_err();
    let message = refused.to_string();
    assert!(message.contains(&path.display().to_string()) && message.contains("was deleted"), "{message}");
    assert!(matches!(refused, solidq::EnqueueError::Store(solidq::StoreError::DatabaseGone(_))), "{refused:?}");
    wait_for("the heartbeat to notice and fence the process", Duration::from_secs(5), || {
        log.count("the database is gone") > 0 && log.count("fenced") > 0
    })
    .await;
    let errors = log.errors_between(std::time::Instant::now() - Duration::from_secs(60), std::time::Instant::now());
    assert!(errors.iter().any(|line| line.contains(&path.display().to_string())), "{errors:?}");
    assert!(!path.exists(), "nothing recreated the file");
    handle.shutdown().await;
}

#[derive(Serialize, Deserialize)]
struct Slow(i64);

impl Job for Slow {
    const KIND: &'static str = "test.slow";
}

/// A plain `Result` handler: `handle` runs to its end before the actor takes the next job.
struct SlowHandler {
    seen: Executions,
}

impl Actor for SlowHandler {
    type Context = Context<Self>;
}

impl Handler<Perform<Slow>> for SlowHandler {
    type Result = Result<(), JobError>;
    fn handle(&mut self, msg: Perform<Slow>, _: &mut Context<Self>) -> Self::Result {
        self.seen.lock().unwrap().push((msg.job.0, std::time::Instant::now()));
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }
}

backend_test!(
    /// What `Runtime::register`'s documentation promises: with three slots, three jobs of a kind
    /// whose handler returns a `ResponseFuture` run at once, while a plain `Result` handler runs
    /// them one after another.
    async fn jobs_of_one_kind_run_at_once_only_with_a_response_future(db: TestDb) {
        let (concurrent, sequential): (Executions, Executions) = Default::default();
        let (c, s) = (concurrent.clone(), sequential.clone());
        let runtime = Runtime::new(fast_config(&db), logger())
            .unwrap()
            .register::<Step, _, _>(move || Stepper { seen: c.clone() })
            .register::<Slow, _, _>(move || SlowHandler { seen: s.clone() });
        let queue = runtime.queue();
        queue.enqueue_all((1..=3).map(|n| Step { n, panic: false, sleep_ms: 300 })).await.unwrap();
        let handle = runtime.start().unwrap();
        wait_for("the ticks", Duration::from_secs(10), || db.store.counts().unwrap().0.finished == 3).await;
        queue.enqueue_all((1..=3).map(Slow)).await.unwrap();
        wait_for("the slow ones", Duration::from_secs(10), || db.store.counts().unwrap().0.finished == 6).await;
        let spread = |runs: &Executions| {
            let runs = runs.lock().unwrap();
            let first = runs.iter().map(|(_, at)| *at).min().unwrap();
            runs.iter().map(|(_, at)| at.duration_since(first)).max().unwrap()
        };
        assert!(
            spread(&concurrent) < Duration::from_millis(150),
            "ResponseFuture jobs started {:?} apart",
            spread(&concurrent)
        );
        assert!(
            spread(&sequential) >= Duration::from_millis(400),
            "plain handlers overlapped: {:?}",
            spread(&sequential)
        );
        handle.shutdown().await;
    }
);

#[derive(Serialize, Deserialize)]
struct BadlyNamed;

impl Job for BadlyNamed {
    const KIND: &'static str = "report\tweekly";
}

#[derive(Serialize, Deserialize)]
struct BlankQueue;

impl Job for BlankQueue {
    const KIND: &'static str = "report.weekly";
    const QUEUE: &'static str = " ";
}

/// A job type whose `KIND` or `QUEUE` breaks the rules of names cannot be registered (start
/// fails naming the type, the field and the rule), and an enqueue with a bad queue name or key
/// in its options is refused before anything is written.
#[actix_rt::test]
async fn job_types_and_options_with_bad_names_are_refused() {
    let db = TestDb::sqlite();
    let noop = |_: BadlyNamed, _: solidq::JobMeta| async { Ok(()) };
    let refused = Runtime::new(fast_config(&db), logger()).unwrap().register_async::<BadlyNamed, _, _>(noop).start();
    let message = refused.err().expect("a bad kind is refused").to_string();
    assert!(message.contains("BadlyNamed") && message.contains("control character U+0009"), "{message}");
    let noop = |_: BlankQueue, _: solidq::JobMeta| async { Ok(()) };
    let refused = Runtime::new(fast_config(&db), logger()).unwrap().register_async::<BlankQueue, _, _>(noop).start();
    let message = refused.err().expect("a blank queue is refused").to_string();
    assert!(message.contains("its QUEUE: the queue name \" \" has leading or trailing whitespace"), "{message}");

    let queue = Runtime::new(fast_config(&db), logger()).unwrap().queue();
    let step = || Step { n: 1, panic: false, sleep_ms: 0 };
    for (options, expected) in [
        (solidq::EnqueueOptions::new().queue("mail\n"), "the queue name \"mail\\n\" contains the control character"),
        (solidq::EnqueueOptions::new().unique_key(" k "), "the unique key \" k \" has leading or trailing whitespace"),
    ] {
        let refused = queue.enqueue_with(step(), options).await.expect_err("refused").to_string();
        assert!(refused.contains(expected), "{refused}");
    }
    assert_eq!(db.store.counts().unwrap().0.ready, 0);
}
