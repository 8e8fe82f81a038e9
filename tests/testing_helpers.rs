//! The test helpers (`solidq::testing`): the README's example first, then capture assertions,
//! drains, inline mode, batches, workflows and the bounds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use solidq::testing::{DrainError, TestQueue, MAX_INLINE_DEPTH};
use solidq::{EnqueueError, EnqueueOptions, Job, JobError, JobMeta, JobState, NewJob, Perform, Queue, Workflow};

// ---- The README example ("Testing your jobs"), as a user would write it. ----

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SignUp {
    user_id: i64,
}
impl Job for SignUp {
    const KIND: &'static str = "accounts.sign_up";
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Welcome {
    user_id: i64,
}
impl Job for Welcome {
    const KIND: &'static str = "mailer.welcome";
    const QUEUE: &'static str = "mail";
}

/// The application's handler: signing up enqueues a welcome mail.
async fn sign_up(queue: Queue, job: SignUp) -> Result<(), JobError> {
    queue.enqueue(Welcome { user_id: job.user_id }).await.map_err(|e| JobError::new(e.to_string()))?;
    Ok(())
}

#[actix_rt::test]
async fn signing_up_sends_a_welcome_mail() {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let mails = sent.clone();
    let testq = TestQueue::new();
    let queue = testq.queue();
    let testq = testq
        .register_async::<SignUp, _, _>(move |job, _meta: JobMeta| sign_up(queue.clone(), job))
        .register_async::<Welcome, _, _>(move |job, _meta| {
            mails.lock().unwrap().push(job.user_id);
            async { Ok(()) }
        });

    // The code under test enqueues; in capture mode nothing runs yet.
    testq.queue().enqueue(SignUp { user_id: 7 }).await.unwrap();
    testq.assert_enqueued_where::<SignUp>(|e| e.job.user_id == 7);
    testq.assert_not_enqueued::<Welcome>();

    // Run everything, including the mail the sign-up enqueues.
    let drained = testq.drain().await.unwrap();
    assert_eq!(drained.succeeded, 2);
    testq.assert_enqueued_where::<Welcome>(|e| e.queue == "mail" && e.job.user_id == 7);
    assert_eq!(*sent.lock().unwrap(), [7]);
}

// ---- Shared jobs and helpers. ----

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// The text of a panic caught from `f`.
fn panic_text(f: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("the assertion should fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[derive(Debug, Serialize, Deserialize)]
struct Step {
    name: String,
}
impl Job for Step {
    const KIND: &'static str = "test.step";
}

/// Fails its first `fail_first` attempts, then succeeds.
#[derive(Debug, Serialize, Deserialize)]
struct Flaky {
    fail_first: i32,
}
impl Job for Flaky {
    const KIND: &'static str = "test.flaky";
}

/// Enqueues the next one up to `last`.
#[derive(Debug, Serialize, Deserialize)]
struct Countdown {
    n: u32,
    last: u32,
}
impl Job for Countdown {
    const KIND: &'static str = "test.countdown";
}

fn countdown_queue(log: &Log, testq: TestQueue) -> TestQueue {
    let (queue, log) = (testq.queue(), log.clone());
    testq.register_async::<Countdown, _, _>(move |job, _meta| {
        let (queue, log) = (queue.clone(), log.clone());
        async move {
            log.lock().unwrap().push(format!("countdown {}", job.n));
            if job.n < job.last {
                queue
                    .enqueue(Countdown { n: job.n + 1, last: job.last })
                    .await
                    .map_err(|e| JobError::permanent(e.to_string()))?;
            }
            Ok(())
        }
    })
}

fn step_queue(log: &Log, testq: TestQueue) -> TestQueue {
    let log = log.clone();
    testq.register_async::<Step, _, _>(move |job, _meta| {
        log.lock().unwrap().push(job.name);
        async { Ok(()) }
    })
}

/// Guards a test that could hang: fails it after 30 s instead.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match actix_rt::time::timeout(Duration::from_secs(30), future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not end within 30 s (a hang)"),
    }
}

// ---- Capture mode. ----

#[actix_rt::test]
async fn capture_assertions_see_queue_time_count_and_arguments_and_say_what_was_enqueued() {
    let testq = TestQueue::new();
    let queue = testq.queue();
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    queue.enqueue(SignUp { user_id: 1 }).await.unwrap();
    queue.enqueue_with(SignUp { user_id: 2 }, EnqueueOptions::new().queue("vip").priority(-3)).await.unwrap();
    queue.enqueue_with(Welcome { user_id: 2 }, EnqueueOptions::new().run_at(later)).await.unwrap();

    testq.assert_enqueued::<SignUp>();
    testq.assert_enqueued_count::<SignUp>(2);
    testq.assert_enqueued_on::<SignUp>("vip");
    testq.assert_enqueued_where::<SignUp>(|e| e.job.user_id == 2 && e.priority == -3);
    testq.assert_scheduled_between::<Welcome>(
        later - chrono::Duration::seconds(1),
        later + chrono::Duration::seconds(1),
    );
    let signups = testq.enqueued::<SignUp>();
    assert_eq!(signups.len(), 2);
    assert_eq!(signups[0].job, SignUp { user_id: 1 });
    assert_eq!(
        (signups[0].queue.as_str(), signups[0].state, signups[0].scheduled_at),
        ("default", Some(JobState::Ready), None)
    );
    assert_eq!(signups[1].arguments, serde_json::json!({"user_id": 2}));
    assert!(signups[0].id < signups[1].id);
    let welcome = &testq.enqueued::<Welcome>()[0];
    assert_eq!(welcome.state, Some(JobState::Scheduled));

    // Each assertion fails when it should, listing what was enqueued.
    let text = panic_text(|| testq.assert_not_enqueued::<SignUp>());
    assert!(text.contains("expected no job of kind \"accounts.sign_up\" to be enqueued, found 2"), "{text}");
    assert!(text.contains("enqueued: 3 job(s)"), "{text}");
    assert!(text.contains(r#"accounts.sign_up on "vip" (ready) {"user_id":2}"#), "{text}");
    assert!(text.contains(r#"mailer.welcome on "mail" (scheduled at "#), "{text}");
    let text = panic_text(|| testq.assert_enqueued_count::<SignUp>(3));
    assert!(text.contains("expected 3 job(s) of kind \"accounts.sign_up\" to be enqueued, found 2"), "{text}");
    let text = panic_text(|| testq.assert_enqueued_where::<SignUp>(|e| e.job.user_id == 3));
    assert!(text.contains("matching the predicate") && text.contains(r#"{"user_id":1}"#), "{text}");
    let text = panic_text(|| testq.assert_enqueued_on::<Welcome>("vip"));
    assert!(text.contains("on queue \"vip\""), "{text}");
    let text = panic_text(|| testq.assert_scheduled_between::<SignUp>(later, later));
    assert!(text.contains("scheduled between"), "{text}");
    let text = panic_text(|| testq.assert_enqueued::<Step>());
    assert!(text.contains("expected a job of kind \"test.step\" to be enqueued, found none"), "{text}");

    // Two test queues do not share a database.
    TestQueue::new().assert_not_enqueued::<SignUp>();
}

// ---- Drains. ----

#[actix_rt::test]
async fn drain_runs_the_jobs_jobs_enqueue_until_none_is_ready() {
    let log = log();
    let testq = countdown_queue(&log, TestQueue::new());
    testq.queue().enqueue(Countdown { n: 1, last: 4 }).await.unwrap();
    assert!(entries(&log).is_empty(), "capture mode runs nothing before the drain");
    let drained = testq.drain().await.unwrap();
    assert_eq!(drained.succeeded, 4);
    assert_eq!(entries(&log), ["countdown 1", "countdown 2", "countdown 3", "countdown 4"]);
    assert!(testq.enqueued::<Countdown>().iter().all(|e| e.state == Some(JobState::Finished)));
    // Nothing left: a second drain runs nothing.
    assert_eq!(testq.drain().await.unwrap().runs.len(), 0);
}

#[actix_rt::test]
async fn the_drain_bound_stops_jobs_that_enqueue_without_end() {
    let log = log();
    let testq = countdown_queue(&log, TestQueue::new()).max_jobs(5);
    testq.queue().enqueue(Countdown { n: 0, last: u32::MAX }).await.unwrap();
    let err = within("a bounded drain", testq.drain()).await.unwrap_err();
    match &err {
        DrainError::Bound { max_jobs, drained } => {
            assert_eq!((*max_jobs, drained.succeeded), (5, 5));
        }
        other => panic!("expected the bound, got {other}"),
    }
    assert!(err.to_string().contains("stopped after 5 jobs"), "{err}");
    // The sixth was handed back unrun.
    let left: Vec<_> = testq.enqueued::<Countdown>().into_iter().filter(|e| e.state == Some(JobState::Ready)).collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].job.n, 5);
}

#[actix_rt::test]
async fn scheduled_jobs_and_retries_wait_for_drain_including_scheduled() {
    let log = log();
    let testq = step_queue(&log, TestQueue::new());
    let attempts = log.clone();
    let testq = testq.register_async::<Flaky, _, _>(move |job, meta| {
        attempts.lock().unwrap().push(format!("flaky attempt {}", meta.attempt));
        let fail = meta.attempt <= job.fail_first;
        async move {
            if fail {
                Err(JobError::new("not yet"))
            } else {
                Ok(())
            }
        }
    });
    let queue = testq.queue();
    queue
        .enqueue_with(Step { name: "later".into() }, EnqueueOptions::new().run_in(Duration::from_secs(3600)))
        .await
        .unwrap();
    queue.enqueue(Flaky { fail_first: 1 }).await.unwrap();

    let first = testq.drain().await.unwrap();
    assert_eq!((first.succeeded, first.retried), (0, 1), "{first:?}");
    assert_eq!(first.runs[0].error.as_deref(), Some("not yet"));
    assert_eq!(testq.enqueued::<Flaky>()[0].state, Some(JobState::Scheduled), "the retry waits for its backoff");
    assert_eq!(testq.drain().await.unwrap().runs.len(), 0, "nothing is due");

    let second = testq.drain_including_scheduled().await.unwrap();
    assert_eq!(second.succeeded, 2, "{second:?}");
    assert_eq!(entries(&log), ["flaky attempt 1", "later", "flaky attempt 2"]);
    assert_eq!(testq.enqueued::<Flaky>()[0].state, Some(JobState::Finished));

    // A job that always fails runs until its attempts are used up, then fails for good.
    queue.enqueue_with(Flaky { fail_first: 99 }, EnqueueOptions::new().max_attempts(3)).await.unwrap();
    let third = testq.drain_including_scheduled().await.unwrap();
    assert_eq!((third.retried, third.failed), (2, 1), "{third:?}");
    let failed = testq.enqueued::<Flaky>().pop().unwrap();
    assert_eq!((failed.state, failed.attempts), (Some(JobState::Failed), 3));
}

/// A handler actor that panics on `n == 0`.
struct Fragile;
impl Actor for Fragile {
    type Context = Context<Self>;
}
#[derive(Debug, Serialize, Deserialize)]
struct Divide {
    n: i64,
}
impl Job for Divide {
    const KIND: &'static str = "test.divide";
}
impl Handler<Perform<Divide>> for Fragile {
    type Result = Result<(), JobError>;
    fn handle(&mut self, msg: Perform<Divide>, _: &mut Context<Self>) -> Self::Result {
        if msg.job.n == 0 {
            panic!("division by zero in job {}", msg.meta.id);
        }
        Ok(())
    }
}

#[actix_rt::test]
async fn a_panicking_handler_fails_its_job_with_the_message_and_the_next_job_runs() {
    let testq = TestQueue::new().register::<Divide, _, _>(|| Fragile);
    let queue = testq.queue();
    let id = queue.enqueue_with(Divide { n: 0 }, EnqueueOptions::new().max_attempts(1)).await.unwrap();
    queue.enqueue(Divide { n: 2 }).await.unwrap();
    let drained = within("a drain with a panic", testq.drain()).await.unwrap();
    assert_eq!((drained.failed, drained.succeeded), (1, 1), "{drained:?}");
    let message = drained.runs[0].error.clone().unwrap();
    assert!(message.contains(&format!("handler panicked: division by zero in job {id}")), "{message}");
    let row = testq.store().job(id).unwrap().unwrap();
    assert_eq!(row.state, Some(JobState::Failed));
    assert!(row.last_error.unwrap().message.contains("division by zero"));
}

#[actix_rt::test]
async fn a_drain_names_kinds_without_a_handler() {
    let log = log();
    let testq = step_queue(&log, TestQueue::new());
    testq.queue().enqueue(SignUp { user_id: 1 }).await.unwrap();
    testq.queue().enqueue(Step { name: "known".into() }).await.unwrap();
    let err = testq.drain().await.unwrap_err();
    match &err {
        DrainError::UnknownKinds { kinds, drained, .. } => {
            assert_eq!(kinds, &["accounts.sign_up".to_string()]);
            assert_eq!(drained.succeeded, 1, "the known kind still ran");
        }
        other => panic!("expected unknown kinds, got {other}"),
    }
    assert!(err.to_string().contains("\"accounts.sign_up\"") && err.to_string().contains("test.step"), "{err}");
    assert_eq!(entries(&log), ["known"]);
}

// ---- Batches and workflows. ----

#[derive(Debug, Serialize, Deserialize)]
struct AlbumDone {
    album: u32,
}
impl Job for AlbumDone {
    const KIND: &'static str = "test.album_done";
}

#[actix_rt::test]
async fn a_drain_runs_the_batch_callback_after_the_batch() {
    let log = log();
    let testq = step_queue(&log, TestQueue::new());
    let (done_log, queue) = (log.clone(), testq.queue());
    let testq = testq.register_async::<AlbumDone, _, _>(move |job, meta| {
        let (done_log, queue) = (done_log.clone(), queue.clone());
        async move {
            let batch = queue.batch_of(meta.id).await.map_err(|e| JobError::new(e.to_string()))?.unwrap();
            done_log.lock().unwrap().push(format!("album {} done: {} jobs", job.album, batch.size));
            Ok(())
        }
    });
    let batch = testq
        .queue()
        .batch()
        .on_success(AlbumDone { album: 7 })
        .enqueue((1..=3).map(|n| Step { name: format!("resize {n}") }))
        .await
        .unwrap();
    assert_eq!(batch.jobs.len(), 3);
    testq.assert_not_enqueued::<AlbumDone>();
    let drained = testq.drain().await.unwrap();
    assert_eq!(drained.succeeded, 4, "{drained:?}");
    assert_eq!(entries(&log), ["resize 1", "resize 2", "resize 3", "album 7 done: 3 jobs"]);
}

#[actix_rt::test]
async fn a_drain_runs_workflow_steps_in_order_as_prerequisites_finish() {
    let log = log();
    let testq = step_queue(&log, TestQueue::new());
    let step = |name: &str| Step { name: name.into() };
    // Declared out of order, and with the later steps enqueued first (lower ids).
    let flow = Workflow::new()
        .step_after("publish", step("publish"), &["small", "large"])
        .step_after("large", step("large"), &["fetch"])
        .step_after("small", step("small"), &["fetch"])
        .step("fetch", step("fetch"));
    let ids = testq.queue().enqueue_workflow(flow).await.unwrap();
    assert_eq!(testq.store().job(ids["publish"]).unwrap().unwrap().state, Some(JobState::Waiting));
    let drained = testq.drain().await.unwrap();
    assert_eq!(drained.succeeded, 4);
    let order = entries(&log);
    assert_eq!(order.first().map(String::as_str), Some("fetch"), "{order:?}");
    assert_eq!(order.last().map(String::as_str), Some("publish"), "{order:?}");
    assert_eq!(order.len(), 4);
}

// ---- Inline mode. ----

/// An async actor whose `Countdown` handler enqueues the next one inline (a `ResponseFuture`).
struct Counter {
    queue: Queue,
    log: Log,
}
impl Actor for Counter {
    type Context = Context<Self>;
}
impl Handler<Perform<Countdown>> for Counter {
    type Result = ResponseFuture<Result<(), JobError>>;
    fn handle(&mut self, msg: Perform<Countdown>, _: &mut Context<Self>) -> Self::Result {
        let (queue, log, job) = (self.queue.clone(), self.log.clone(), msg.job);
        Box::pin(async move {
            log.lock().unwrap().push(format!("start {}", job.n));
            if job.n < job.last {
                queue
                    .enqueue(Countdown { n: job.n + 1, last: job.last })
                    .await
                    .map_err(|e| JobError::permanent(e.to_string()))?;
            }
            log.lock().unwrap().push(format!("end {}", job.n));
            Ok(())
        })
    }
}

#[actix_rt::test]
async fn inline_enqueues_run_the_job_and_its_nested_jobs_before_returning() {
    let log = log();
    let testq = TestQueue::inline();
    assert!(testq.is_inline());
    let (queue, actor_log) = (testq.queue(), log.clone());
    let testq = testq.register::<Countdown, _, _>(move || Counter { queue: queue.clone(), log: actor_log.clone() });
    within("an inline enqueue", testq.queue().enqueue(Countdown { n: 1, last: 3 })).await.unwrap();
    // Nested: each job's enqueue returned after the job it enqueued ended.
    assert_eq!(entries(&log), ["start 1", "start 2", "start 3", "end 3", "end 2", "end 1"]);
    assert!(testq.enqueued::<Countdown>().iter().all(|e| e.state == Some(JobState::Finished)));
}

#[actix_rt::test]
async fn an_inline_job_that_fails_makes_its_enqueue_fail_and_is_recorded() {
    let testq =
        TestQueue::inline().register_async::<Flaky, _, _>(|_, _| async { Err(JobError::permanent("card declined")) });
    let err = testq.queue().enqueue(Flaky { fail_first: 1 }).await.unwrap_err();
    assert!(matches!(err, EnqueueError::Inline(_)), "{err}");
    assert!(err.to_string().contains("test.flaky") && err.to_string().contains("card declined"), "{err}");
    assert_eq!(testq.inline_errors().len(), 1);
    assert_eq!(testq.enqueued::<Flaky>()[0].state, Some(JobState::Failed));
    // An unknown kind is refused by name.
    let err = testq.queue().enqueue(SignUp { user_id: 1 }).await.unwrap_err();
    assert!(err.to_string().contains("accounts.sign_up"), "{err}");
}

#[actix_rt::test]
async fn inline_nesting_stops_at_the_depth_bound_with_an_error_naming_it() {
    let log = log();
    let testq = countdown_queue(&log, TestQueue::inline());
    let err = within("inline nesting without end", testq.queue().enqueue(Countdown { n: 0, last: u32::MAX }))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("nested {MAX_INLINE_DEPTH} deep")) && text.contains("MAX_INLINE_DEPTH"), "{text}");
    // Depths 1 to 32 ran a job each; the 33rd enqueue wrote nothing.
    testq.assert_enqueued_count::<Countdown>(MAX_INLINE_DEPTH);
    assert_eq!(log.lock().unwrap().len(), MAX_INLINE_DEPTH);
    // Every level's enqueue failed, up to the first: the errors were not swallowed.
    assert!(testq.enqueued::<Countdown>().iter().all(|e| e.state == Some(JobState::Failed)));
    // The bound is not stuck: a short chain runs after it.
    within("a short chain", testq.queue().enqueue(Countdown { n: 0, last: 2 })).await.unwrap();
}

/// A blocking handler on a pool of one thread that enqueues its own kind.
struct Blocking {
    queue: Queue,
    log: Log,
}
impl Actor for Blocking {
    type Context = SyncContext<Self>;
}
impl Handler<Perform<Countdown>> for Blocking {
    type Result = Result<(), JobError>;
    fn handle(&mut self, msg: Perform<Countdown>, _: &mut SyncContext<Self>) -> Self::Result {
        self.log.lock().unwrap().push(format!("blocking {}", msg.job.n));
        if msg.job.n < msg.job.last {
            let next = NewJob::from_job(&Countdown { n: msg.job.n + 1, last: msg.job.last }, EnqueueOptions::new())
                .map_err(|e| JobError::permanent(e.to_string()))?;
            self.queue.enqueue_new_blocking(&[next]).map_err(|e| JobError::permanent(e.to_string()))?;
        }
        Ok(())
    }
}

#[actix_rt::test]
async fn a_one_thread_blocking_handler_enqueueing_its_own_kind_inline_does_not_deadlock() {
    let log = log();
    let testq = TestQueue::inline().max_jobs(10);
    let (queue, actor_log) = (testq.queue(), log.clone());
    let testq =
        testq.register_sync::<Countdown, _, _>(1, move || Blocking { queue: queue.clone(), log: actor_log.clone() });
    within("a blocking chain", testq.queue().enqueue(Countdown { n: 1, last: 3 })).await.unwrap();
    // Its jobs ran one after another, after the job that enqueued them, within the enqueue.
    assert_eq!(entries(&log), ["blocking 1", "blocking 2", "blocking 3"]);
    // Without end: the bound stops it, and the enqueue says so.
    let err = within("a blocking chain without end", testq.queue().enqueue(Countdown { n: 0, last: u32::MAX }))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stopped after 10 jobs"), "{err}");
}

#[actix_rt::test]
async fn rate_limited_jobs_over_their_limit_wait_for_drain_including_scheduled() {
    let log = log();
    let ran = log.clone();
    let testq = TestQueue::new().register_async::<Step, _, _>(move |job, _meta| {
        ran.lock().unwrap().push(job.name);
        async { Ok(()) }
    });
    let limit = solidq::model::RateLimit::per_minute("provider", 1);
    for name in ["a", "b", "c"] {
        let opts = EnqueueOptions::new().rate_limit(limit.clone());
        testq.queue().enqueue_new(vec![NewJob::from_job(&Step { name: name.into() }, opts).unwrap()]).await.unwrap();
    }
    // One start per minute: the drain runs one, the others wait (scheduled) for the window.
    let drained = testq.drain().await.unwrap();
    assert_eq!((drained.succeeded, entries(&log).len()), (1, 1), "{drained:?}");
    let states: Vec<_> = testq.enqueued::<Step>().iter().map(|e| e.state).collect();
    assert_eq!(states.iter().filter(|s| **s == Some(JobState::Scheduled)).count(), 2, "{states:?}");
    // Every window as passed: the rest run.
    let drained = testq.drain_including_scheduled().await.unwrap();
    assert_eq!(drained.succeeded, 2, "{drained:?}");
    assert_eq!(entries(&log), ["a", "b", "c"]);
}
