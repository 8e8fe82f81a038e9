//! Drain-throughput harness for apalis with its MySQL backend (apalis-mysql 1.0.0-rc.8 on
//! apalis 1.0.0-rc.9), run beside solidq's `examples/bench.rs --scenario drain` and the
//! apalis/PostgreSQL harness in ../apalis. See ../README.md for the protocol.
//!
//! 1. `MySqlStorage::setup` (the library's migrations), then empty `jobs` and `workers`.
//!    On a server without the `utf8mb4_0900_ai_ci` collation (MariaDB before 11.4.5), the first
//!    migration is run with `utf8mb4_unicode_ci` in its place; nothing else is changed.
//! 2. Seed N no-op jobs with `TaskSink::push_bulk`; timed -> `enqueue_per_s`.
//! 3. Start WORKERS workers, each on its own `Monitor` in its own tokio task, each claiming
//!    up to BATCH rows per fetch (`Config::set_buffer_size`).
//! 4. Clock from worker start until the database shows all N rows `Done`, checked only once
//!    the in-process handler count has reached N -> `drain_per_s`.
//! 5. Print one JSON line.
//!
//! A fetch that fails (with several workers: InnoDB deadlocks, 1213) ends that worker's task
//! stream and so the worker; the library's `Monitor` does not restart it by default. The harness
//! keeps that default, logs each such exit on stderr with its time, and counts it in `errors`;
//! the drain then goes on with the workers left. RESTART=1 instead restarts the worker under a
//! new name (the old name stays registered in `workers` and would be refused for ~30 s).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_mysql::{Config, MySqlPool, MySqlStorage};
use sqlx::migrate::{Migration, Migrator};
use sqlx::mysql::MySqlPoolOptions;

const QUEUE: &str = "bench";
/// MySQL 8's default utf8mb4 collation, named in the library's first migration.
const MYSQL8_COLLATION: &str = "utf8mb4_0900_ai_ci";
/// Its stand-in where the server does not know it (MariaDB 10.x).
const FALLBACK_COLLATION: &str = "utf8mb4_unicode_ci";

/// Handler runs in this process. Only tells when to start asking the database.
static HANDLED: AtomicU64 = AtomicU64::new(0);
/// Worker errors reported through the monitors' events, plus workers that exited with an error.
static ERRORS: AtomicU64 = AtomicU64::new(0);
/// Workers still running (not stopped by an error without restart).
static ALIVE: AtomicUsize = AtomicUsize::new(0);

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

async fn count_jobs(pool: &MySqlPool, status: Option<&str>) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE job_type = ? AND (? IS NULL OR status = ?)")
        .bind(QUEUE)
        .bind(status)
        .bind(status)
        .fetch_one(pool)
        .await
        .expect("count jobs")
}

/// `MySqlStorage::setup`, or the same migrations with the collation replaced when the server
/// lacks MySQL 8's (`ERROR 1273 (HY000): Unknown collation: 'utf8mb4_0900_ai_ci'` otherwise).
async fn setup(pool: &MySqlPool) {
    let known: i64 = sqlx::query_scalar("SELECT count(*) FROM information_schema.COLLATIONS WHERE COLLATION_NAME = ?")
        .bind(MYSQL8_COLLATION)
        .fetch_one(pool)
        .await
        .expect("look up collations");
    if known > 0 {
        MySqlStorage::setup(pool).await.expect("apalis-mysql migrations");
        return;
    }
    let library = MySqlStorage::migrations();
    let migrations: Vec<Migration> = library
        .iter()
        .map(|m| {
            if !m.sql.contains(MYSQL8_COLLATION) {
                return m.clone();
            }
            let sql = m.sql.replace(MYSQL8_COLLATION, FALLBACK_COLLATION);
            Migration::new(m.version, m.description.clone(), m.migration_type, Cow::Owned(sql), m.no_tx)
        })
        .collect();
    let migrator = Migrator { migrations: Cow::Owned(migrations), ..library };
    migrator.run(pool).await.expect("apalis-mysql migrations (collation replaced)");
    eprintln!("note: server has no {MYSQL8_COLLATION}; ran the apalis-mysql migrations with {FALLBACK_COLLATION}");
}

#[tokio::main]
async fn main() {
    let url = setting("DATABASE_URL", "mysql://root@127.0.0.1:3306/apalis_bench".to_string());
    let n: u64 = setting("N", 100_000);
    let workers: usize = setting("WORKERS", 1);
    let batch: usize = setting("BATCH", 1000);
    let poll_ms: u64 = setting("POLL_MS", 100);
    let pool_size: u32 = setting("POOL", (2 * workers as u32 + 2).max(10));
    let timeout = Duration::from_secs(setting("TIMEOUT_S", 600));
    let restart = setting("RESTART", 0u8) == 1;

    let pool = MySqlPoolOptions::new().max_connections(pool_size).connect(&url).await.expect("connect to DATABASE_URL");
    setup(&pool).await;
    // jobs first: jobs.lock_by references workers.id.
    for clear in ["DELETE FROM jobs", "DELETE FROM workers"] {
        sqlx::query(clear).execute(&pool).await.expect(clear);
    }

    // A plain interval after an empty fetch, as `poll_with_interval` in the PostgreSQL harness
    // (the library's default adds a backoff).
    let poll = StrategyBuilder::new().apply(IntervalStrategy::new(Duration::from_millis(poll_ms))).build();
    let config = Config::new(QUEUE).set_buffer_size(batch).with_poll_interval(poll);
    let storage = MySqlStorage::<u64, (), ()>::new_with_config(&pool, &config);

    // Seed, timed: one bulk push of all N jobs.
    let started = Instant::now();
    storage.clone().push_bulk((0..n).collect()).await.expect("push_bulk");
    let enqueue_s = started.elapsed().as_secs_f64();
    let seeded = count_jobs(&pool, Some("Pending")).await;
    assert_eq!(seeded as u64, n, "rows seeded");

    // Drain: one Monitor per worker, each in its own task, so the workers use both cores.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    ALIVE.store(workers, Ordering::Relaxed);
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
            .should_restart(move |ctx, e, _attempt| {
                if matches!(e, WorkerError::GracefulExit) {
                    return false;
                }
                ERRORS.fetch_add(1, Ordering::Relaxed);
                let at = started.elapsed().as_secs_f64();
                if !restart {
                    ALIVE.fetch_sub(1, Ordering::Relaxed);
                }
                let then = if restart { "restarting it" } else { "not restarted" };
                eprintln!("{at:.3}s: worker {} stopped, {then}: {e}", ctx.name());
                restart
            })
            .register(move |restarts| {
                let name = if restarts == 0 { format!("bench-{w}") } else { format!("bench-{w}.r{restarts}") };
                WorkerBuilder::new(name).backend(storage.clone()).build(noop)
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

    let running = || ALIVE.load(Ordering::Relaxed) > 0 && started.elapsed() < timeout;
    while HANDLED.load(Ordering::Relaxed) < n && running() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut done;
    loop {
        done = count_jobs(&pool, Some("Done")).await;
        if done as u64 >= n || !running() {
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
            r#"{{"peer":"apalis-mysql","jobs":{},"workers":{},"batch":{},"#,
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
