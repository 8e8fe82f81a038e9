//! Recurring tasks in a running runtime: static tasks (builder) are written and run, dynamic
//! tasks added through the handle are picked up at the next reload and run, and bad static
//! tasks stop the start with a readable error.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::fixtures::{Noop, NoopHandler};
use common::{backend_test, wait_for, TestDb};
use solidq::config::Config;
use solidq::recurring::RecurringTask;
use solidq::store::Removed;
use solidq::{Job, Runtime, RuntimeError};

fn runtime(db: &TestDb) -> Runtime {
    let config =
        Config { database_url: db.url.clone(), polling_interval: Duration::from_millis(50), ..Config::default() };
    Runtime::with_store(config, db.store.clone(), common::fixtures::logger())
        .unwrap()
        .register::<Noop, _, _>(|| NoopHandler)
}

fn runs(db: &TestDb, key: &str) -> usize {
    db.store.recurring_runs(key, Utc::now().naive_utc() - chrono::Duration::hours(1)).unwrap().len()
}

backend_test!(
    async fn static_and_dynamic_tasks_run_and_their_jobs_are_performed(db: TestDb) {
        let every_second =
            RecurringTask::new("static-tick", "every 1s", "test.noop").unwrap().arguments(serde_json::json!(7));
        let runtime = runtime(&db).recurring(every_second);
        let handle = runtime.start().unwrap();
        wait_for("two runs of the static task", Duration::from_secs(10), || runs(&db, "static-tick") >= 2).await;
        let rows = handle.recurring_tasks().list().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].is_static && rows[0].last_run_at.is_some(), "{rows:?}");

        let tasks = handle.recurring_tasks();
        tasks
            .add(
                RecurringTask::new("dynamic-tick", "*/1 * * * * *", "test.noop")
                    .unwrap()
                    .arguments(serde_json::json!(8)),
            )
            .await
            .unwrap();
        // Picked up at the next reload of the task list (every 5 s).
        wait_for("a run of the dynamic task", Duration::from_secs(12), || runs(&db, "dynamic-tick") >= 1).await;
        assert_eq!(tasks.remove("static-tick").await.unwrap(), Removed::Static);
        assert_eq!(tasks.remove("dynamic-tick").await.unwrap(), Removed::Removed);
        // The jobs of the runs are performed by the runtime's workers.
        wait_for("a recurring job to finish", Duration::from_secs(10), || db.store.counts().unwrap().0.finished >= 2)
            .await;
        handle.shutdown().await;
    }
);

/// A slow report whose kind allows one at a time: runs due while one is running wait.
#[derive(serde::Serialize, serde::Deserialize)]
struct SlowReport {
    name: String,
}

impl solidq::Job for SlowReport {
    const KIND: &'static str = "test.slow_report";
    fn concurrency(&self) -> Option<solidq::ConcurrencyLimit> {
        Some(solidq::ConcurrencyLimit::new(format!("report:{}", self.name), 1))
    }
}

struct SlowReporter;

impl actix::Actor for SlowReporter {
    type Context = actix::SyncContext<Self>;
}

impl actix::Handler<solidq::Perform<SlowReport>> for SlowReporter {
    type Result = Result<(), solidq::JobError>;
    fn handle(&mut self, _: solidq::Perform<SlowReport>, _: &mut actix::SyncContext<Self>) -> Self::Result {
        std::thread::sleep(Duration::from_millis(2_500));
        Ok(())
    }
}

backend_test!(
    /// The runs of a recurring task go through the concurrency limit its kind derives from the
    /// arguments, as an enqueue from Rust code would.
    async fn recurring_runs_go_through_their_kinds_concurrency_limit(db: TestDb) {
        let task = RecurringTask::new("report", "every 1s", SlowReport::KIND)
            .unwrap()
            .arguments(serde_json::json!({ "name": "daily" }));
        let handle =
            runtime(&db).register_sync::<SlowReport, _, _>(3, || SlowReporter).recurring(task).start().unwrap();
        wait_for("three runs", Duration::from_secs(10), || runs(&db, "report") >= 3).await;
        let totals = db.store.counts().unwrap().0;
        assert_eq!(totals.claimed, 1, "one report at a time: {totals:?}");
        assert!(totals.blocked >= 1, "the later runs wait as blocked: {totals:?}");
        handle.shutdown().await;
    }
);

#[actix_rt::test]
async fn a_static_key_given_twice_stops_the_start() {
    let db = TestDb::sqlite();
    let task = RecurringTask::new("twice", "every 1m", "test.noop").unwrap();
    let err = runtime(&db).recurring(task.clone()).recurring(task).start().err().expect("a start error");
    assert!(matches!(err, RuntimeError::Recurring(_)));
    assert!(err.to_string().contains("recurring task \"twice\" is configured twice"), "{err}");
    let bad_queue = RecurringTask::new("q", "every 1m", "test.noop").unwrap().queue("a,b");
    let err = runtime(&db).recurring(bad_queue).start().err().expect("a start error").to_string();
    assert!(err.contains("recurring task \"q\": the queue name \"a,b\" contains"), "{err}");
}
