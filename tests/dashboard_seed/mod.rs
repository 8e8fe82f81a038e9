//! Data the dashboard tests show: a live process, ready, scheduled and failed jobs, with
//! `<script>` in a kind, in arguments and in an error message.
#![allow(dead_code)]

use chrono::{NaiveDateTime, TimeDelta};
use solidq::model::{FailureKind, FailureRecord, NewProcess, ProcessMetadata, QueuePattern};
use solidq::{EnqueueOptions, JobId, NewJob, Store};

/// The ids the seed created.
pub struct Seeded {
    pub process: i64,
    pub ready: JobId,
    pub scheduled: JobId,
    pub failed: Vec<JobId>,
}

/// A kind with markup in it, stored as is.
pub const EVIL_KIND: &str = "mail.<script>kind</script>";
/// Arguments with markup.
pub const EVIL_ARGUMENTS: &str = r#"{"to":"<script>alert('args')</script>"}"#;
/// An error message with markup.
pub const EVIL_MESSAGE: &str = "<script>alert('error')</script> smtp refused";

pub fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

pub fn job(kind: &str, queue: &str, arguments: serde_json::Value) -> NewJob {
    NewJob::from_json(kind, arguments, EnqueueOptions::new().queue(queue)).expect("a valid job")
}

/// Fails `count` new jobs of `kind` on `queue` with `message`, through `process`.
pub fn fail_jobs(store: &Store, process: i64, kind: &str, queue: &str, message: &str, count: usize) -> Vec<JobId> {
    let jobs: Vec<NewJob> = (0..count).map(|n| job(kind, queue, serde_json::json!({ "n": n }))).collect();
    let ids = store.enqueue(&jobs, now()).expect("enqueue");
    let claimed =
        store.claim(process, &[QueuePattern::parse(queue)], &[kind.to_string()], count, now()).expect("claim");
    assert_eq!(claimed.len(), count, "claimed the jobs to fail");
    let tokens: Vec<_> = claimed.iter().map(|c| c.token).collect();
    let mut record = FailureRecord::new(FailureKind::Error, message);
    record.backtrace = Some("src/mail.rs:10:5 <in send>".into());
    store.fail_claims(&tokens, &record, now()).expect("fail");
    ids
}

pub fn seed(store: &Store) -> Seeded {
    let process = store
        .register_process(
            &NewProcess {
                kind: "Runtime".into(),
                name: "runtime-test-1".into(),
                pid: 4242,
                hostname: "testhost".into(),
                metadata: ProcessMetadata::default(),
            },
            now(),
        )
        .expect("register");
    // It leads: the overview names it and the processes page marks it.
    store.take_leadership(process, now()).expect("elect");
    let ready = store
        .enqueue(
            &[NewJob::from_json(
                EVIL_KIND,
                serde_json::from_str(EVIL_ARGUMENTS).unwrap(),
                EnqueueOptions::new().queue("mail"),
            )
            .unwrap()],
            now(),
        )
        .expect("enqueue")[0];
    let scheduled = store
        .enqueue(
            &[NewJob {
                scheduled_at: Some(now() + TimeDelta::hours(1)),
                ..job("report.daily", "reports", serde_json::json!({"day": "2026-12-05"}))
            }],
            now(),
        )
        .expect("enqueue")[0];
    let failed = fail_jobs(store, process, "mail.send", "mail", EVIL_MESSAGE, 2);
    Seeded { process, ready, scheduled, failed }
}

/// More to look at, for the screenshots: finished jobs over the last minutes, a second failure
/// group, a recurring task, jobs under a concurrency key and a unique key, a late process.
pub fn showcase(store: &Store, seeded: &Seeded) {
    use solidq::{ConcurrencyLimit, RecurringTask};
    for minutes_ago in [1i64, 3, 4, 7, 12, 20, 33, 45] {
        let at = now() - TimeDelta::minutes(minutes_ago);
        let n = (minutes_ago % 5 + 2) as usize;
        let jobs: Vec<NewJob> =
            (0..n).map(|i| job("image.resize", "media", serde_json::json!({ "image": i }))).collect();
        store.enqueue(&jobs, at).expect("enqueue");
        let claimed = store
            .claim(seeded.process, &[QueuePattern::parse("media")], &["image.resize".to_string()], n, at)
            .expect("claim");
        let tokens: Vec<_> = claimed.iter().map(|c| c.token).collect();
        store.complete_claims(&tokens, at).expect("complete");
    }
    fail_jobs(store, seeded.process, "billing.charge", "billing", "card declined: insufficient funds", 3);
    let task = RecurringTask::new("nightly-report", "0 2 * * *", "report.nightly")
        .expect("task")
        .arguments(serde_json::json!({ "format": "pdf" }))
        .queue("reports")
        .time_zone("Europe/Paris")
        .expect("zone");
    store.add_recurring_task(&task, now()).expect("add task");
    let limited = |n: i32| {
        NewJob::from_json(
            "sync.account",
            serde_json::json!({ "account": n }),
            EnqueueOptions::new().queue("sync").concurrency(ConcurrencyLimit::new("account-42", 1)),
        )
        .unwrap()
    };
    store.enqueue(&[limited(1), limited(2), limited(3)], now()).expect("enqueue limited");
    let unique = NewJob::from_json(
        "digest.weekly",
        serde_json::json!({ "week": 49 }),
        EnqueueOptions::new().queue("mail").unique_key("digest-2026-49"),
    )
    .unwrap();
    store.enqueue(&[unique], now()).expect("enqueue unique");
    // A process whose heartbeat is late, holding a job: the stuck page lists it.
    let slow = store
        .register_process(
            &NewProcess {
                kind: "Runtime".into(),
                name: "runtime-slow-2".into(),
                pid: 5151,
                hostname: "otherhost".into(),
                metadata: ProcessMetadata::default(),
            },
            now() - TimeDelta::seconds(40),
        )
        .expect("register");
    store.enqueue(&[job("video.encode", "media", serde_json::json!({ "video": 7 }))], now()).expect("enqueue");
    let held =
        store.claim(slow, &[QueuePattern::parse("media")], &["video.encode".to_string()], 1, now()).expect("claim");
    assert_eq!(held.len(), 1, "the slow process holds a job");
    // A batch of three photos, one done, with callbacks: the batches pages show it open.
    let batch = solidq::store::composition::NewBatch {
        description: Some("album 3: resize the photos".into()),
        on_success: Some(job("album.publish", "media", serde_json::json!({ "album": 3 }))),
        on_failure: Some(job("album.report", "media", serde_json::json!({ "album": 3 }))),
        ..Default::default()
    };
    let photos: Vec<NewJob> =
        (0..3).map(|n| job("photo.resize", "photos", serde_json::json!({ "photo": n }))).collect();
    store.enqueue_batch(&batch, &photos, now()).expect("enqueue a batch");
    let claimed = store
        .claim(seeded.process, &[QueuePattern::parse("photos")], &["photo.resize".to_string()], 1, now())
        .expect("claim");
    let tokens: Vec<_> = claimed.iter().map(|c| c.token).collect();
    store.complete_claims(&tokens, now()).expect("complete");
}
