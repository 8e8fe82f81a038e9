//! The demo: `cargo run --example demo`.
//!
//! Creates the database (SQLite `solidq.sqlite3` unless `SOLIDQ_DATABASE_URL` says otherwise),
//! registers an async handler actor and a blocking one on a `SyncArbiter`, enqueues a mix of
//! jobs (immediate, scheduled a few seconds out, different priorities, one whose handler panics
//! on its first run), shows progress, prints the status table and exits 0 once every job it
//! enqueued has finished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use solidq::{EnqueueOptions, Job, JobError, NewJob, Perform, Runtime};

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

struct Renderer;

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
    let runtime = Runtime::from_env()?
        .register::<WelcomeEmail, _, _>(|| Mailer)
        .register::<FlakyReport, _, _>(|| Mailer)
        .register_sync::<RenderThumbnail, _, _>(2, || Renderer);
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
    let ids = runtime.queue().enqueue_new_blocking(&jobs)?;
    println!("enqueued {} jobs (3 scheduled 3 s out, one that panics once)", ids.len());

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
            let states = actix_rt::task::spawn_blocking(move || {
                ids.iter().map(|id| view.job(*id).map(|j| j.and_then(|j| j.state))).collect::<Result<Vec<_>, _>>()
            })
            .await??;
            let count = |s: &str| states.iter().filter(|st| st.is_some_and(|st| st.as_str() == s)).count();
            let line = format!(
                "progress: ready={} scheduled={} claimed={} finished={} failed={}",
                count("ready"),
                count("scheduled"),
                count("claimed"),
                count("finished"),
                count("failed")
            );
            if line != last_line {
                println!("[{:>5.1}s] {line}", started.elapsed().as_secs_f32());
                last_line = line;
            }
            if count("finished") + count("failed") == states.len() {
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
    println!("all demo jobs finished");
    Ok(())
}
