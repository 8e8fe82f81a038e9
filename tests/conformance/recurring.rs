//! Recurring tasks: the task list (static and dynamic) and runs enqueued once over every
//! scheduler of a database.

use super::*;
use crate::common::{backend_test, TestDb};
use solidq::recurring::{RecurringTask, RunMissed};
use solidq::store::{DueRun, Removed};
use solidq::EnqueueOptions;

fn task(key: &str, schedule: &str) -> RecurringTask {
    RecurringTask::new(key, schedule, "test.recurring").expect("a valid task")
}

fn due(key: &str, run_at: NaiveDateTime) -> DueRun {
    let job =
        NewJob::from_json("test.recurring", json!({ "task": key }), EnqueueOptions::new().queue("cron").priority(3))
            .expect("a valid job");
    DueRun { task_key: key.to_string(), run_at, job }
}

backend_test!(
    fn tasks_are_added_listed_and_removed(db: &TestDb) {
        let nightly = task("nightly", "30 2 * * *")
            .arguments(json!({ "format": "pdf" }))
            .queue("reports")
            .priority(-2)
            .time_zone("Europe/Berlin")
            .unwrap()
            .run_missed(RunMissed::Latest);
        db.store.add_recurring_task(&nightly, t(0)).unwrap();
        db.store.add_recurring_task(&task("ping", "every 30s"), t(1)).unwrap();
        let rows = db.store.recurring_tasks().unwrap();
        assert_eq!(rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["nightly", "ping"]);
        assert_eq!(rows[0].task().unwrap(), nightly, "a task reads back as written");
        assert_eq!(
            (rows[0].time_zone.as_str(), rows[0].run_missed.as_str(), rows[0].is_static, rows[0].last_run_at),
            ("Europe/Berlin", "latest", false, None)
        );
        // Adding a task with a key that exists replaces it.
        db.store.add_recurring_task(&task("ping", "every 1m"), t(2)).unwrap();
        let rows = db.store.recurring_task_list().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].schedule.as_str(), rows[1].created_at, rows[1].updated_at), ("every 1m", t(1), t(2)));

        assert_eq!(db.store.remove_recurring_task("ping").unwrap(), Removed::Removed);
        assert_eq!(db.store.remove_recurring_task("ping").unwrap(), Removed::Missing);
        assert_eq!(db.store.recurring_tasks().unwrap().len(), 1);
    }
);

backend_test!(
    fn static_tasks_are_rewritten_and_stale_ones_removed_leaving_dynamic_ones(db: &TestDb) {
        db.store.add_recurring_task(&task("dynamic", "every 1h"), t(0)).unwrap();
        let synced =
            db.store.sync_static_recurring_tasks(&[task("a", "every 1m"), task("b", "every 2m")], t(1)).unwrap();
        assert_eq!((synced.written, synced.removed.len()), (2, 0));
        assert_eq!(db.store.remove_recurring_task("a").unwrap(), Removed::Static, "static tasks stay");
        // A second scheduler starts with another configuration: b changed, a gone, c new.
        let again = db.connect_again();
        let synced = again.sync_static_recurring_tasks(&[task("b", "every 5m"), task("c", "@daily")], t(2)).unwrap();
        assert_eq!(synced.removed, ["a"]);
        let rows = db.store.recurring_tasks().unwrap();
        let listed: Vec<(&str, &str, bool)> =
            rows.iter().map(|r| (r.key.as_str(), r.schedule.as_str(), r.is_static)).collect();
        assert_eq!(listed, [("b", "every 5m", true), ("c", "@daily", true), ("dynamic", "every 1h", false)]);
        // No static task configured: every static task goes, the dynamic one stays.
        assert_eq!(db.store.sync_static_recurring_tasks(&[], t(3)).unwrap().removed, ["b", "c"]);
        assert_eq!(db.store.recurring_tasks().unwrap().len(), 1);
    }
);

backend_test!(
    fn a_run_is_enqueued_once_by_two_stores(db: &TestDb) {
        let other = db.connect_again();
        let first = db.store.enqueue_recurring_runs(&[due("ping", t(60))], t(60)).unwrap();
        let second = other.enqueue_recurring_runs(&[due("ping", t(60)), due("ping", t(61))], t(61)).unwrap();
        let job = first[0].expect("the first scheduler enqueues the run");
        assert_eq!(second[0], None, "the second finds it enqueued");
        assert!(second[1].is_some(), "and enqueues the next run");
        assert_eq!(totals(&db.store), counts(2, 0, 0, 0, 0));
        let row = db.store.job(job).unwrap().unwrap();
        assert_eq!((row.kind.as_str(), row.queue.as_str(), row.priority), ("test.recurring", "cron", 3));
        let runs = db.store.recurring_runs("ping", t(0)).unwrap();
        assert_eq!(
            runs.iter().map(|r| (r.run_at, r.job_id)).collect::<Vec<_>>(),
            [(t(60), Some(job)), (t(61), second[1])]
        );
    }
);

backend_test!(
    fn concurrent_schedulers_enqueue_each_run_once(db: &TestDb) {
        const SCHEDULERS: usize = 4;
        const RUNS: i64 = 25;
        let barrier = Arc::new(Barrier::new(SCHEDULERS));
        let threads: Vec<_> = (0..SCHEDULERS)
            .map(|_| {
                let (store, barrier) = (db.connect_again(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    let mut won = 0;
                    for second in 0..RUNS {
                        let ids = store.enqueue_recurring_runs(&[due("every-second", t(second))], t(second)).unwrap();
                        won += ids.iter().flatten().count();
                    }
                    won
                })
            })
            .collect();
        let won: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(won, RUNS as usize, "each run won by exactly one scheduler");
        assert_eq!(totals(&db.store).ready, RUNS, "one job per run");
        assert_eq!(db.store.recurring_runs("every-second", t(0)).unwrap().len(), RUNS as usize);
    }
);

backend_test!(
    fn last_runs_are_read_per_task(db: &TestDb) {
        db.store.enqueue_recurring_runs(&[due("a", t(10)), due("a", t(20)), due("b", t(5))], t(20)).unwrap();
        let keys = ["a".to_string(), "b".to_string(), "never".to_string()];
        let last = db.store.last_recurring_runs(&keys).unwrap();
        assert_eq!((last.get("a"), last.get("b"), last.get("never")), (Some(&t(20)), Some(&t(5)), None));
        db.store.add_recurring_task(&task("a", "every 10s"), t(0)).unwrap();
        assert_eq!(db.store.recurring_tasks().unwrap()[0].last_run_at, Some(t(20)));
    }
);

backend_test!(
    fn a_task_whose_job_would_be_refused_is_refused(db: &TestDb) {
        let bad = task("bad", "every 1m").queue("a*");
        assert!(db.store.add_recurring_task(&bad, t(0)).is_err());
        assert!(db.store.sync_static_recurring_tasks(&[bad], t(0)).is_err());
        assert!(db.store.recurring_tasks().unwrap().is_empty());
    }
);
