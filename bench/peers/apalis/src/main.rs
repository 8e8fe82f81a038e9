//! Drain-throughput harness for apalis 1.0 with its PostgreSQL backend, run beside solidq's
//! `examples/bench.rs --scenario drain` on the same server. See ../README.md for the protocol.
//!
//! 1. `PostgresStorage::setup` (the library's migrations), then empty `apalis.jobs`.
//! 2. Seed N no-op jobs with `TaskSink::push_bulk`; timed -> `enqueue_per_s`.
//! 3. Start WORKERS workers, each on its own `Monitor` in its own tokio task, each claiming
//!    up to BATCH rows per fetch.
//! 4. Clock from worker start until the database shows all N rows `Done`, checked only once
//!    the in-process handler count has reached N -> `drain_per_s`.
//! 5. Print one JSON line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_postgres::{Config, PgPool, PostgresStorage};
use sqlx::postgres::PgPoolOptions;

const QUEUE: &str = "bench";

/// Handler runs in this process. Only tells when to start asking the database.
static HANDLED: AtomicU64 = AtomicU64::new(0);
/// Worker errors reported through the monitors' events.
static ERRORS: AtomicU64 = AtomicU64::new(0);

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        _ => default,
    }
}

async fn noop(_job: u64) -> Result<(), BoxDynError> {
    HANDLED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn count_jobs(pool: &PgPool, status: Option<&str>) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND ($2::text IS NULL OR status = $2)",
    )
    .bind(QUEUE)
    .bind(status)
    .fetch_one(pool)
    .await
    .expect("count apalis.jobs")
}

#[tokio::main]
async fn main() {
    let url = setting("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/apalis_bench".to_string());
    let n: u64 = setting("N", 100_000);
    let workers: usize = setting("WORKERS", 4);
    let batch: usize = setting("BATCH", 1000);
    let poll_ms: u64 = setting("POLL_MS", 100);
    let pool_size: u32 = setting("POOL", (2 * workers as u32 + 2).max(10));
    let timeout = Duration::from_secs(setting("TIMEOUT_S", 600));

    let pool = PgPoolOptions::new().max_connections(pool_size).connect(&url).await.expect("connect to DATABASE_URL");
    PostgresStorage::setup(&pool).await.expect("apalis migrations");
    for clear in ["DELETE FROM apalis.jobs", "DELETE FROM apalis.workers"] {
        sqlx::query(clear).execute(&pool).await.expect(clear);
    }

    let config = Config::default().queue(QUEUE).batch_size(batch);
    let storage: PostgresStorage<u64> = PostgresStorage::new(&pool).with_config(config);

    // Seed, timed: one bulk push of all N jobs.
    let started = Instant::now();
    storage.clone().push_bulk((0..n).collect()).await.expect("push_bulk");
    let enqueue_s = started.elapsed().as_secs_f64();
    let seeded = count_jobs(&pool, Some("Pending")).await;
    assert_eq!(seeded as u64, n, "rows seeded");

    // Drain: one Monitor per worker, each in its own task, so the workers use both cores.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut monitors = Vec::with_capacity(workers);
    for w in 0..workers {
        let storage = storage.clone();
        let mut stop_rx = stop_rx.clone();
        let monitor = Monitor::new()
            .on_event(|ctx, event| {
                if let Event::Error(e) = event {
                    ERRORS.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{}: {e}", ctx.name());
                }
            })
            .register(move |_restarts| {
                WorkerBuilder::new(format!("bench-{w}"))
                    .backend(storage.clone().poll_with_interval(Duration::from_millis(poll_ms)))
                    .build(noop)
            });
        monitors.push(tokio::spawn(async move {
            let stop = async move {
                let _ = stop_rx.changed().await;
                Ok(())
            };
            if let Err(e) = monitor.run_with_signal(stop).await {
                eprintln!("monitor {w}: {e}");
            }
        }));
    }

    while HANDLED.load(Ordering::Relaxed) < n && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut done = 0;
    while started.elapsed() < timeout {
        done = count_jobs(&pool, Some("Done")).await;
        if done as u64 >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_s = started.elapsed().as_secs_f64();
    let complete = done as u64 >= n;

    let _ = stop_tx.send(true);
    for m in monitors {
        let _ = tokio::time::timeout(Duration::from_secs(30), m).await;
    }
    let not_done = count_jobs(&pool, None).await - count_jobs(&pool, Some("Done")).await;

    println!(
        concat!(
            r#"{{"peer":"apalis","jobs":{},"workers":{},"batch":{},"#,
            r#""enqueue_per_s":{},"drain_per_s":{},"drain_s":{:.3},"not_done":{},"errors":{}}}"#
        ),
        n,
        workers,
        batch,
        (n as f64 / enqueue_s).round() as u64,
        if complete { (n as f64 / drain_s).round() as u64 } else { 0 },
        drain_s,
        not_done,
        ERRORS.load(Ordering::Relaxed),
    );
    pool.close().await;
    if !complete {
        std::process::exit(1);
    }
}
