//! The demo: `cargo run --example demo`.
//!
//! Creates the database (SQLite `solidq.sqlite3` unless `SOLIDQ_DATABASE_URL` says otherwise;
//! a `mysql://` URL needs `--features mysql`),
//! registers an async handler actor and a blocking one on a `SyncArbiter`, enqueues a mix of
//! jobs (immediate, scheduled a few seconds out, different priorities, one whose handler panics
//! on its first run, one that fails with an error and succeeds on its retry, one that snoozes,
//! a concurrency-limited kind that runs one job per account at a time), a batch of photo
//! resizes whose callback runs once the last one finished, and a small workflow (fetch, then two
//! resizes side by side, then publish once both finished), adds a recurring task that runs
//! every second, shows progress, prints the status table and exits 0 once every job it enqueued
//! has finished (the batch's callback and the workflow's last step included) and the recurring
//! task has run at least twice.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use solidq::recurring::RecurringTask;
use solidq::store::JobFilter;
use solidq::{ConcurrencyLimit, EnqueueOptions, Job, JobError, JobState, NewJob, Perform, Queue, Runtime, Workflow};

/// Sent by the async `Mailer` actor.
#[derive(Serialize, Deserialize)]
struct WelcomeEmail {
    user: String,
}

impl Job for WelcomeEmail {
    const KIND: &'static str = "demo.welcome_email";
    const QUEUE: &'static str = "mailers";
}

/// Rendered by the blocking `Renderer` actors.
#[derive(Serialize, Deserialize)]
struct RenderThumbnail {
    image: u32,
    millis: u64,
}

impl Job for RenderThumbnail {
    const KIND: &'static str = "demo.render_thumbnail";
    const QUEUE: &'static str = "media";
}

/// Its handler panics the first time it runs; the retry succeeds.
#[derive(Serialize, Deserialize)]
struct FlakyReport {
    name: String,
}

impl Job for FlakyReport {
    const KIND: &'static str = "demo.flaky_report";
    const MAX_ATTEMPTS: i32 = 3;
    fn backoff(_attempt: i32) -> Duration {
        Duration::from_secs(1)
    }
}

/// Fails with an error on its first attempt (the invoice service is "down"), succeeds on the
/// retry.
#[derive(Serialize, Deserialize)]
struct SendInvoice {
    number: u32,
}

impl Job for SendInvoice {
    const KIND: &'static str = "demo.send_invoice";
    fn backoff(_attempt: i32) -> Duration {
        Duration::from_millis(500)
    }
}

/// Snoozes twice (the stock is not there yet) without using an attempt, then runs.
#[derive(Serialize, Deserialize)]
struct ShipOrder {
    order: u32,
}

impl Job for ShipOrder {
    const KIND: &'static str = "demo.ship_order";
}

/// At most one per account at a time: the others wait as blocked.
#[derive(Serialize, Deserialize)]
struct SyncAccount {
    account: u32,
    step: u32,
}

impl Job for SyncAccount {
    const KIND: &'static str = "demo.sync_account";
    fn concurrency(&self) -> Option<ConcurrencyLimit> {
        Some(ConcurrencyLimit::new(format!("account:{}", self.account), 1))
    }
}

/// Enqueued every second by a recurring task.
#[derive(Serialize, Deserialize)]
struct Tick {}

impl Job for Tick {
    const KIND: &'static str = "demo.tick";
}

/// A member of the album batch.
#[derive(Serialize, Deserialize)]
struct ResizePhoto {
    photo: u32,
}

impl Job for ResizePhoto {
    const KIND: &'static str = "demo.resize_photo";
    const QUEUE: &'static str = "media";
}

/// The album batch's callback: runs once, after the last photo was resized.
#[derive(Serialize, Deserialize)]
struct AlbumReady {
    album: u32,
}

impl Job for AlbumReady {
    const KIND: &'static str = "demo.album_ready";
}

/// One step of the publishing workflow.
#[derive(Serialize, Deserialize)]
struct PublishStep {
    step: String,
}

impl Job for PublishStep {
    const KIND: &'static str = "demo.publish_step";
}

/// Runs the album callback (reading its batch) and the workflow steps.
struct Album {
    queue: Queue,
}

impl Actor for Album {
    type Context = Context<Self>;
}

impl Handler<Perform<AlbumReady>> for Album {
    type Result = ResponseFuture<Result<(), JobError>>;

    fn handle(&mut self, msg: Perform<AlbumReady>, _: &mut Context<Self>) -> Self::Result {
        let queue = self.queue.clone();
        Box::pin(async move {
            // A callback finds its batch by its own job id.
            let batch = queue.batch_of(msg.meta.id).await.map_err(|e| JobError::new(e.to_string()))?;
            let batch = batch.ok_or_else(|| JobError::new("the callback has no batch"))?;
            println!(
                "  album: album {} ready: batch {} ended with {} of {} photos resized, {} failed",
                msg.job.album, batch.id, batch.succeeded, batch.size, batch.failed
            );
            Ok(())
        })
    }
}

impl Handler<Perform<PublishStep>> for Album {
    type Result = Result<(), JobError>;

    fn handle(&mut self, msg: Perform<PublishStep>, _: &mut Context<Self>) -> Self::Result {
        println!("  workflow: step {} (job {})", msg.job.step, msg.meta.id);
        Ok(())
    }
}

struct Mailer;

impl Actor for Mailer {
    type Context = Context<Self>;
}

impl Handler<Perform<WelcomeEmail>> for Mailer {
    type Result = ResponseFuture<Result<(), JobError>>;

    fn handle(&mut self, msg: Perform<WelcomeEmail>, _: &mut Context<Self>) -> Self::Result {
        Box::pin(async move {
            actix_rt::time::sleep(Duration::from_millis(30)).await;
            println!("  mailer: welcome mail sent to {} (job {})", msg.job.user, msg.meta.id);
            Ok(())
        })
    }
}

static PANICKED_ONCE: AtomicBool = AtomicBool::new(false);

impl Handler<Perform<FlakyReport>> for Mailer {
    type Result = Result<(), JobError>;

    fn handle(&mut self, msg: Perform<FlakyReport>, _: &mut Context<Self>) -> Self::Result {
        if !PANICKED_ONCE.swap(true, Ordering::SeqCst) {
            panic!("report {} hit a bug on attempt {}", msg.job.name, msg.meta.attempt);
        }
        println!("  mailer: report {} sent on attempt {}", msg.job.name, msg.meta.attempt);
        Ok(())
    }
}

static SNOOZES: AtomicUsize = AtomicUsize::new(0);

impl Handler<Perform<SendInvoice>> for Mailer {
    type Result = Result<(), JobError>;

    fn handle(&mut self, msg: Perform<SendInvoice>, _: &mut Context<Self>) -> Self::Result {
        if msg.meta.attempt == 1 {
            println!("  mailer: invoice {} failed on attempt 1 (service down), retried in 0.5 s", msg.job.number);
            return Err(JobError::new("invoice service unavailable"));
        }
        println!("  mailer: invoice {} sent on attempt {}", msg.job.number, msg.meta.attempt);
        Ok(())
    }
}

impl Handler<Perform<ShipOrder>> for Mailer {
    type Result = Result<(), JobError>;

    fn handle(&mut self, msg: Perform<ShipOrder>, _: &mut Context<Self>) -> Self::Result {
        if SNOOZES.fetch_add(1, Ordering::SeqCst) < 2 {
            println!(
                "  mailer: order {} not in stock yet, snoozed 0.5 s (attempt {} not used)",
                msg.job.order, msg.meta.attempt
            );
            return Err(JobError::snooze(Duration::from_millis(500)));
        }
        println!("  mailer: order {} shipped on attempt {}", msg.job.order, msg.meta.attempt);
        Ok(())
    }
}

impl Handler<Perform<Tick>> for Mailer {
    type Result = Result<(), JobError>;

    fn handle(&mut self, msg: Perform<Tick>, _: &mut Context<Self>) -> Self::Result {
        println!("  mailer: recurring tick (job {})", msg.meta.id);
        Ok(())
    }
}

static SYNCING: AtomicUsize = AtomicUsize::new(0);
static MOST_SYNCING: AtomicUsize = AtomicUsize::new(0);

struct Renderer;

impl Handler<Perform<SyncAccount>> for Renderer {
    type Result = Result<(), JobError>;

    fn handle(&mut self, msg: Perform<SyncAccount>, _: &mut SyncContext<Self>) -> Self::Result {
        let running = SYNCING.fetch_add(1, Ordering::SeqCst) + 1;
        MOST_SYNCING.fetch_max(running, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(150));
        SYNCING.fetch_sub(1, Ordering::SeqCst);
        println!("  renderer: account {} synced, step {} ({running} running)", msg.job.account, msg.job.step);
        Ok(())
    }
}

impl Actor for Renderer {
    type Context = SyncContext<Self>;
}

impl Handler<Perform<RenderThumbnail>> for Renderer {
    type Result = Result<(), JobError>;

    fn handle(&mut self, msg: Perform<RenderThumbnail>, _: &mut SyncContext<Self>) -> Self::Result {
        // Blocking work is fine here: this actor runs on its own SyncArbiter thread.
        std::thread::sleep(Duration::from_millis(msg.job.millis));
        println!("  renderer: thumbnail {} rendered on {:?}", msg.job.image, std::thread::current().id());
        Ok(())
    }
}

impl Handler<Perform<ResizePhoto>> for Renderer {
    type Result = Result<(), JobError>;

    fn handle(&mut self, msg: Perform<ResizePhoto>, _: &mut SyncContext<Self>) -> Self::Result {
        std::thread::sleep(Duration::from_millis(100));
        println!("  renderer: photo {} of the album resized (job {})", msg.job.photo, msg.meta.id);
        Ok(())
    }
}

fn main() {
    std::process::exit(match run() {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("demo failed: {err}");
            1
        }
    });
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::from_env()?;
    let queue = runtime.queue();
    let album_queue = queue.clone();
    let workflow_queue = queue.clone();
    let runtime = runtime
        .register::<AlbumReady, _, _>(move || Album { queue: album_queue.clone() })
        .register::<PublishStep, _, _>(move || Album { queue: workflow_queue.clone() })
        .register_sync::<ResizePhoto, _, _>(2, || Renderer)
        .register::<WelcomeEmail, _, _>(|| Mailer)
        .register::<FlakyReport, _, _>(|| Mailer)
        .register::<SendInvoice, _, _>(|| Mailer)
        .register::<ShipOrder, _, _>(|| Mailer)
        .register::<Tick, _, _>(|| Mailer)
        .register_sync::<RenderThumbnail, _, _>(2, || Renderer)
        .register_sync::<SyncAccount, _, _>(3, || Renderer)
        .recurring(RecurringTask::new("demo-tick", "every 1s", Tick::KIND)?.arguments(serde_json::json!({})));
    let store = runtime.store();
    println!("solidq demo on {} ({})", runtime.config().database_url, store.backend());

    let mut jobs = Vec::new();
    for (i, user) in ["ada", "grace", "linus", "barbara", "ken", "margaret"].iter().enumerate() {
        let opts = EnqueueOptions::new().priority(if i % 2 == 0 { 0 } else { 5 });
        jobs.push(NewJob::from_job(&WelcomeEmail { user: user.to_string() }, opts)?);
    }
    for image in 1..=6 {
        jobs.push(NewJob::from_job(
            &RenderThumbnail { image, millis: 100 + 50 * image as u64 },
            EnqueueOptions::new(),
        )?);
    }
    for image in 7..=9 {
        let opts = EnqueueOptions::new().run_in(Duration::from_secs(3)).priority(-1);
        jobs.push(NewJob::from_job(&RenderThumbnail { image, millis: 50 }, opts)?);
    }
    jobs.push(NewJob::from_job(&FlakyReport { name: "weekly".into() }, EnqueueOptions::new())?);
    jobs.push(NewJob::from_job(&SendInvoice { number: 1001 }, EnqueueOptions::new())?);
    jobs.push(NewJob::from_job(&ShipOrder { order: 77 }, EnqueueOptions::new())?);
    for step in 1..=3 {
        jobs.push(NewJob::from_job(&SyncAccount { account: 1, step }, EnqueueOptions::new())?);
    }
    let mut ids = runtime.queue().enqueue_new_blocking(&jobs)?;
    println!(
        "enqueued {} jobs (3 scheduled 3 s out, one that panics once, one that fails once, one that snoozes, \
         3 syncs of one account limited to 1 at a time) and a recurring task every second",
        ids.len()
    );
    // A batch of four resizes with a callback, and a workflow: enqueued before the runtime
    // starts, on the store (each in one transaction).
    let photos: Vec<NewJob> = (1..=4)
        .map(|photo| NewJob::from_job(&ResizePhoto { photo }, EnqueueOptions::new()))
        .collect::<Result<_, _>>()?;
    let batch = solidq::store::composition::NewBatch {
        description: Some("album 42".into()),
        on_success: Some(NewJob::from_job(&AlbumReady { album: 42 }, EnqueueOptions::new())?),
        ..Default::default()
    };
    let (batch_id, members) = store.enqueue_batch(&batch, &photos, chrono::Utc::now().naive_utc())?;
    ids.extend(members.iter().map(|m| m.id()));
    let step = |name: &str| PublishStep { step: name.to_string() };
    let flow = Workflow::new()
        .step("fetch", step("fetch"))
        .step_after("resize small", step("resize small"), &["fetch"])
        .step_after("resize large", step("resize large"), &["fetch"])
        .step_after("publish", step("publish"), &["resize small", "resize large"]);
    let (names, steps) = flow.into_steps()?;
    let flow_ids = store.enqueue_workflow(&steps, chrono::Utc::now().naive_utc())?;
    ids.extend(&flow_ids);
    println!(
        "enqueued batch {batch_id} of {} photo resizes (callback: album ready) and a workflow of {} steps ({})",
        members.len(),
        names.len(),
        names.join(", ")
    );

    let view_store = store.clone();
    let alive_threshold = runtime.config().alive_threshold;
    let system = System::new();
    let outcome = system.block_on(async move {
        let handle = runtime.start()?;
        let started = Instant::now();
        let mut last_line = String::new();
        let done = loop {
            actix_rt::time::sleep(Duration::from_millis(250)).await;
            let ids = ids.clone();
            let view = view_store.clone();
            let (states, ticks) = actix_rt::task::spawn_blocking(move || {
                let states = ids
                    .iter()
                    .map(|id| view.job(*id).map(|j| j.and_then(|j| j.state)))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut ticks = JobFilter::new(JobState::Finished);
                ticks.kind = Some(Tick::KIND.to_string());
                Ok::<_, solidq::StoreError>((states, view.list_jobs(&ticks)?.len()))
            })
            .await??;
            let count = |s: &str| states.iter().filter(|st| st.is_some_and(|st| st.as_str() == s)).count();
            let line = format!(
                "progress: waiting={} ready={} scheduled={} blocked={} claimed={} finished={} failed={} recurring runs={}",
                count("waiting"),
                count("ready"),
                count("scheduled"),
                count("blocked"),
                count("claimed"),
                count("finished"),
                count("failed"),
                ticks
            );
            if line != last_line {
                println!("[{:>5.1}s] {line}", started.elapsed().as_secs_f32());
                last_line = line;
            }
            let callback_done = {
                let view = view_store.clone();
                actix_rt::task::spawn_blocking(move || {
                    let batch = view.batch(batch_id)?;
                    let callback = batch.and_then(|b| b.callbacks.first().and_then(|c| c.job));
                    Ok::<_, solidq::StoreError>(match callback {
                        Some(id) => view.job(id)?.and_then(|j| j.state) == Some(JobState::Finished),
                        None => false,
                    })
                })
                .await??
            };
            if count("finished") + count("failed") == states.len() && ticks >= 2 && callback_done {
                break count("failed") == 0;
            }
            if started.elapsed() > Duration::from_secs(50) {
                break false;
            }
        };
        let view = view_store.clone();
        let threshold = alive_threshold;
        let status =
            actix_rt::task::spawn_blocking(move || solidq::status::status_text(view.as_ref(), threshold)).await??;
        println!("\n{status}");
        let report = handle.shutdown().await;
        println!("shutdown: {report:?}");
        Ok::<_, Box<dyn std::error::Error>>(done)
    })?;

    let (counts, _) = store.counts()?;
    println!(
        "after shutdown: {} ready, {} claimed, {} finished, {} failed",
        counts.ready, counts.claimed, counts.finished, counts.failed
    );
    if !outcome {
        return Err("not every demo job finished".into());
    }
    if counts.ready + counts.claimed > 0 {
        return Err(format!("{} jobs left ready and {} claimed", counts.ready, counts.claimed).into());
    }
    let most = MOST_SYNCING.load(Ordering::SeqCst);
    println!("account syncs running at once, at most: {most} (limit 1)");
    if most > 1 {
        return Err("the concurrency limit was exceeded".into());
    }
    println!("all demo jobs finished");
    Ok(())
}
