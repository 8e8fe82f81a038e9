//! What a handler's result means for its job, through the whole runtime on every backend:
//! retry with backoff then success, retry after a given delay, snooze, discard, fail now; and
//! paused queues honoured by a running process.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use common::TestDb;
use serde::{Deserialize, Serialize};
use solidq::config::Config;
use solidq::model::FailureKind;
use solidq::{EnqueueOptions, Job, JobError, Perform, Runtime};

use common::fixtures::logger;
use common::{backend_test, wait_for};

/// The shared fast configuration with three slots.
fn fast_config(db: &TestDb) -> Config {
    common::fixtures::fast_config(db, 3)
}

/// What the handler does with a job, by name.
#[derive(Serialize, Deserialize)]
struct Act {
    name: String,
}

impl Job for Act {
    const KIND: &'static str = "test.act";
    const MAX_ATTEMPTS: i32 = 3;
    fn backoff(_: i32) -> Duration {
        Duration::from_millis(100)
    }
}

/// Executions seen per job name, with their attempt numbers and start times.
type Runs = Arc<Mutex<HashMap<String, Vec<(i32, Instant)>>>>;

struct ActingHandler {
    runs: Runs,
}

impl Actor for ActingHandler {
    type Context = Context<Self>;
}

impl Handler<Perform<Act>> for ActingHandler {
    type Result = Result<(), JobError>;
    fn handle(&mut self, msg: Perform<Act>, _: &mut Context<Self>) -> Self::Result {
        let name = msg.job.name;
        let seen = {
            let mut runs = self.runs.lock().unwrap();
            let entry = runs.entry(name.clone()).or_default();
            entry.push((msg.meta.attempt, Instant::now()));
            entry.len()
        };
        match name.as_str() {
            // Fails twice with the kind's backoff, then succeeds on attempt 3.
            "flaky" if msg.meta.attempt < 3 => Err(JobError::new(format!("flaky on attempt {}", msg.meta.attempt))),
            "rate-limited" if seen == 1 => Err(JobError::retry_in("rate limited", Duration::from_millis(400))),
            // Snoozes twice: three executions, none counted until the last.
            "busy" if seen < 3 => Err(JobError::snooze(Duration::from_millis(100))),
            "pointless" => Err(JobError::discard("the account is gone")),
            "hopeless" => Err(JobError::permanent("no such user")),
            _ => Ok(()),
        }
    }
}

/// A runtime on `db` whose [`ActingHandler`] records its runs in the returned [`Runs`].
fn acting_runtime(db: &TestDb) -> (Runtime, Runs) {
    let runs: Runs = Arc::default();
    let shared = runs.clone();
    let runtime = Runtime::new(fast_config(db), logger())
        .unwrap()
        .register::<Act, _, _>(move || ActingHandler { runs: shared.clone() });
    (runtime, runs)
}

backend_test!(
    async fn each_handler_result_does_what_it_says(db: TestDb) {
        let (runtime, runs) = acting_runtime(&db);
        let queue = runtime.queue();
        let mut ids = HashMap::new();
        for name in ["flaky", "rate-limited", "busy", "pointless", "hopeless"] {
            ids.insert(name, queue.enqueue(Act { name: name.into() }).await.unwrap());
        }
        let handle = runtime.start().unwrap();
        let state = |name: &str| db.state(ids[name]);
        wait_for("every job to end", Duration::from_secs(20), || {
            ["flaky", "rate-limited", "busy"].iter().all(|n| state(n) == "finished")
                && state("pointless") == "discarded"
                && state("hopeless") == "failed"
        })
        .await;
        let runs = runs.lock().unwrap().clone();
        let job = |name: &str| db.store.job(ids[name]).unwrap().unwrap();
        assert_eq!(runs["flaky"].iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(job("flaky").attempts, 3);
        let waited = runs["rate-limited"][1].1 - runs["rate-limited"][0].1;
        assert!(waited >= Duration::from_millis(400), "retried after {waited:?}, asked for 400ms");
        assert_eq!(runs["busy"].iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 1, 1], "snoozes count no attempt");
        assert_eq!(job("busy").attempts, 1);
        assert!(job("busy").last_error.is_none(), "a snooze is not an error");
        assert_eq!(runs["pointless"].len(), 1);
        let discarded = job("pointless").last_error.unwrap();
        assert_eq!((discarded.kind, discarded.message.as_str()), (FailureKind::Discarded, "the account is gone"));
        assert_eq!(runs["hopeless"].len(), 1, "a permanent error fails at once");
        assert_eq!(job("hopeless").last_error.unwrap().message, "no such user");
        handle.shutdown().await;
    }
);

backend_test!(
    async fn a_paused_queue_is_honoured_by_a_running_process(db: TestDb) {
        let (runtime, _runs) = acting_runtime(&db);
        let queue = runtime.queue();
        let handle = runtime.start().unwrap();
        let now = || chrono::Utc::now().naive_utc();
        assert!(db.store.pause_queue("mail", now()).unwrap());
        let paused =
            queue.enqueue_with(Act { name: "paused".into() }, EnqueueOptions::new().queue("mail")).await.unwrap();
        let other = queue.enqueue(Act { name: "other".into() }).await.unwrap();
        wait_for("the job on the other queue", Duration::from_secs(10), || db.state(other) == "finished").await;
        // Long enough for idle workers to back off their polling to seconds.
        actix_rt::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(db.state(paused), "ready", "nothing is claimed from a paused queue");
        let resumed = Instant::now();
        assert!(db.store.resume_queue("mail").unwrap());
        let took =
            wait_for("the resumed queue's job", Duration::from_secs(10), || db.state(paused) == "finished").await;
        eprintln!("backend={} resumed queue's job finished {} ms after resume", db.store.backend(), took.as_millis());
        // A resume wakes idle workers of other stores (PostgreSQL: NOTIFY); SQLite's poll backs off
        // to 1 s at most.
        assert!(resumed.elapsed() < Duration::from_millis(1_500), "took {took:?}");
        handle.shutdown().await;
    }
);
