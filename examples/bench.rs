//! The benchmark: `cargo run --release --example bench -- --backend sqlite|postgres|mysql
//! [--scenario drain|enqueue|latency|schedule|idle|compose|all] [--jobs N]` (`mysql` needs
//! `--features mysql`).
//!
//! Runs against `SOLIDQ_DATABASE_URL` when it is set, otherwise against a fresh database it
//! creates (a SQLite file in a temporary directory, a PostgreSQL database named
//! `solidq_bench_<pid>_<scenario>` on `SOLIDQ_BENCH_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, or a MySQL/MariaDB database of the same name
//! on `SOLIDQ_BENCH_MYSQL_URL`, default `mysql://root@127.0.0.1:3306/mysql`; dropped at the
//! end). On MySQL each line also reports the server's `innodb_autoinc_lock_mode`, which decides
//! whether a bulk enqueue is one INSERT per batch (0 or 1) or one per job (2). The runtime runs with the
//! configuration a user gets (the `SOLIDQ_*` variables, defaults otherwise): handler actors,
//! heartbeat and watchdog on, durable commits. Prints one JSON line per scenario:
//!
//! - `enqueue`: `single_per_s` (one `enqueue` call per job) and `bulk_per_s` (`enqueue_all`)
//!   into the new database, and `bulk_big_per_s` again once it holds the jobs of the first pass;
//! - `drain`: N no-op jobs seeded in bulk, then drained by the runtime; `drain_per_s` from the
//!   start to the last finish confirmed in the database;
//! - `latency`: enqueue-to-start `p50_ms`, `p95_ms`, `p99_ms` at low load (one job at a time);
//! - `idle`: operations per second of one idle process over 10 s, heartbeats counted apart, and
//!   on PostgreSQL the server's transactions per second in the database;
//!
//! each with `rss_mb` (resident now) and `peak_rss_mb`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use serde_json::json;
use solidq::config::Config;
use solidq::store::{Observer, StoreEvent};
use solidq::{DatabaseUrl, EnqueueOptions, Job, JobError, NewJob, Perform, Runtime, SharedStore, Store};

/// A job that does nothing: what the benchmark measures is the queue.
#[derive(Serialize, Deserialize)]
struct Nothing(u64);

impl Job for Nothing {
    const KIND: &'static str = "bench.nothing";
}

/// A job enqueued by another OS process (the bench started as `--enqueue-child`): its number
/// is when it was enqueued, in Unix microseconds.
#[derive(Serialize, Deserialize)]
struct Stamped(u64);

impl Job for Stamped {
    const KIND: &'static str = "bench.stamped";
}

fn unix_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64
}

/// Records how long after its enqueue (in another process) each `Stamped` job started.
struct StampedHandler(Arc<Mutex<Vec<f64>>>);

impl Actor for StampedHandler {
    type Context = Context<Self>;
}

impl Handler<Perform<Stamped>> for StampedHandler {
    type Result = Result<(), JobError>;
    fn handle(&mut self, msg: Perform<Stamped>, _: &mut Context<Self>) -> Self::Result {
        self.0.lock().unwrap().push(unix_us().saturating_sub(msg.job.0) as f64 / 1000.0);
        Ok(())
    }
}

/// `bench --enqueue-child URL N MIN_MS MAX_MS`: enqueues `N` stamped jobs one at a time,
/// `MIN_MS` to `MAX_MS` apart, as another process would (the CLI, a web process), then exits.
fn enqueue_child(url: &str, jobs: usize, spacing_ms: std::ops::Range<u64>) {
    let url = DatabaseUrl::parse(url).expect("a database URL");
    let store = Store::connect(&url, 1).expect("connecting");
    for _ in 0..jobs {
        std::thread::sleep(Duration::from_millis(fastrand::u64(spacing_ms.clone())));
        let job = NewJob::from_job(&Stamped(unix_us()), Default::default()).expect("a job");
        store.enqueue(&[job], chrono::Utc::now().naive_utc()).expect("enqueue");
    }
}

/// Start latencies (ms, sorted) of `jobs` stamped jobs that another OS process enqueues
/// `spacing_ms` apart.
fn from_other_os_process(
    system: &SystemRunner,
    url: &DatabaseUrl,
    stamped: &Arc<Mutex<Vec<f64>>>,
    jobs: usize,
    spacing_ms: std::ops::Range<u64>,
) -> Vec<f64> {
    stamped.lock().unwrap().clear();
    let spacing = [spacing_ms.start.to_string(), spacing_ms.end.to_string()];
    let child = std::process::Command::new(std::env::current_exe().expect("the bench's path"))
        .args(["--enqueue-child", &url_text(url), &jobs.to_string(), &spacing[0], &spacing[1]])
        .status()
        .expect("starting the enqueueing process");
    assert!(child.success(), "the enqueueing process failed: {child}");
    system.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while stamped.lock().unwrap().len() < jobs {
            assert!(Instant::now() < deadline, "jobs of the other process did not all start within 20 s");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let mut latencies = stamped.lock().unwrap().clone();
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}

/// Counts executions and, for the latency scenario, when each started.
#[derive(Clone, Default)]
struct Counter {
    runs: Arc<AtomicUsize>,
    started: Arc<Mutex<Vec<Instant>>>,
    record_starts: bool,
    /// For the schedule scenario: each job's number is its scheduled time (Unix ms), and
    /// how late it started is recorded here.
    lateness_ms: Arc<Mutex<Vec<f64>>>,
    record_lateness: bool,
}

fn unix_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

struct Noop(Counter);

impl Actor for Noop {
    type Context = Context<Self>;
}

impl Handler<Perform<Nothing>> for Noop {
    type Result = Result<(), JobError>;
    fn handle(&mut self, msg: Perform<Nothing>, _: &mut Context<Self>) -> Self::Result {
        if self.0.record_lateness {
            self.0.lateness_ms.lock().unwrap().push(unix_ms() - msg.job.0 as f64);
        }
        if self.0.record_starts {
            self.0.started.lock().unwrap().push(Instant::now());
        }
        self.0.runs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The operation name of the SQLite watcher's `PRAGMA data_version` looks, counted apart:
/// they read no table.
const WATCHING: &str = "watching for commits";

/// Counts store operations by name.
#[derive(Default)]
struct Operations(
    Mutex<std::collections::BTreeMap<&'static str, usize>>,
    Mutex<std::collections::BTreeMap<&'static str, Duration>>,
);

impl Observer for Operations {
    fn finished(&self, event: &StoreEvent) {
        *self.0.lock().unwrap().entry(event.operation).or_default() += 1;
        *self.1.lock().unwrap().entry(event.operation).or_default() += event.elapsed;
    }
}

impl Operations {
    /// Per operation: count per job and mean milliseconds.
    fn per_job(&self, jobs: usize) -> serde_json::Value {
        let counts = self.0.lock().unwrap();
        let elapsed = self.1.lock().unwrap();
        let mut out = serde_json::Map::new();
        for (operation, count) in counts.iter() {
            let mean_ms = elapsed[operation].as_secs_f64() * 1000.0 / *count as f64;
            out.insert(
                operation.to_string(),
                json!({"per_job": (*count as f64 / jobs as f64 * 10_000.0).round() / 10_000.0,
                       "mean_ms": (mean_ms * 100.0).round() / 100.0}),
            );
        }
        serde_json::Value::Object(out)
    }
}

struct Args {
    backend: String,
    scenario: String,
    jobs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { backend: "sqlite".into(), scenario: "all".into(), jobs: 100_000 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--backend" => args.backend = value()?,
            "--scenario" => args.scenario = value()?,
            "--jobs" => args.jobs = value()?.parse().map_err(|e| format!("--jobs: {e}"))?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !["sqlite", "postgres", "mysql"].contains(&args.backend.as_str()) {
        return Err(format!("--backend is sqlite, postgres or mysql, not {:?}", args.backend));
    }
    if args.backend == "mysql" && !cfg!(feature = "mysql") {
        return Err("--backend mysql needs `--features mysql`".into());
    }
    if !["drain", "enqueue", "latency", "schedule", "idle", "compose", "all"].contains(&args.scenario.as_str()) {
        return Err(format!(
            "--scenario is drain, enqueue, latency, schedule, idle, compose or all, not {:?}",
            args.scenario
        ));
    }
    Ok(args)
}

/// A database for one scenario, and what removes it.
struct Database {
    url: DatabaseUrl,
    _dir: Option<tempfile::TempDir>,
    drop_pg: Option<(String, String)>,
    /// The MySQL server URL and the database to drop there.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    drop_mysql: Option<(String, String)>,
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.drop_pg.take() {
            if let Ok(mut conn) = PgConnection::establish(&admin) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
        #[cfg(feature = "mysql")]
        if let Some((admin, name)) = self.drop_mysql.take() {
            if let Ok(mut conn) = diesel::MysqlConnection::establish(&admin) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS `{name}`"));
            }
        }
    }
}

fn fresh_database(backend: &str, scenario: &str) -> Database {
    if let Ok(url) = std::env::var("SOLIDQ_DATABASE_URL") {
        let url = DatabaseUrl::parse(&url).expect("SOLIDQ_DATABASE_URL");
        return Database { url, _dir: None, drop_pg: None, drop_mysql: None };
    }
    match backend {
        "sqlite" => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let url = DatabaseUrl::Sqlite(dir.path().join("bench.sqlite3"));
            Database { url, _dir: Some(dir), drop_pg: None, drop_mysql: None }
        }
        #[cfg(feature = "mysql")]
        "mysql" => {
            let admin =
                std::env::var("SOLIDQ_BENCH_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".into());
            let name = format!("solidq_bench_{}_{scenario}", std::process::id());
            let mut conn = diesel::MysqlConnection::establish(&admin).expect("connecting to SOLIDQ_BENCH_MYSQL_URL");
            conn.batch_execute(&format!("DROP DATABASE IF EXISTS `{name}`")).expect("dropping");
            conn.batch_execute(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
                .expect("creating the bench database");
            let (base, _) = admin.rsplit_once('/').expect("a database name in the URL");
            let url = DatabaseUrl::Mysql(format!("{base}/{name}"));
            Database { url, _dir: None, drop_pg: None, drop_mysql: Some((admin, name)) }
        }
        _ => {
            let admin = std::env::var("SOLIDQ_BENCH_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("solidq_bench_{}_{scenario}", std::process::id());
            let mut conn = PgConnection::establish(&admin).expect("connecting to SOLIDQ_BENCH_POSTGRES_URL");
            conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).expect("dropping");
            conn.batch_execute(&format!("CREATE DATABASE {name}")).expect("creating the bench database");
            let (base, _) = admin.rsplit_once('/').expect("a database name in the URL");
            let url = DatabaseUrl::Postgres(format!("{base}/{name}"));
            Database { url, _dir: None, drop_pg: Some((admin, name)), drop_mysql: None }
        }
    }
}

fn config(url: &DatabaseUrl) -> Config {
    let mut config = Config::from_env().expect("valid SOLIDQ_* variables");
    config.database_url = url.clone();
    config
}

fn quiet() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// CPU time this process has used (user and system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th
    // and 13th, in clock ticks.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let used = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(used * 1000 / ticks)
}

/// Resident and peak resident memory in MB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|line| line.starts_with(key))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

fn nothing_jobs(range: std::ops::Range<usize>) -> Vec<NewJob> {
    range.map(|n| NewJob::from_job(&Nothing(n as u64), Default::default()).expect("a job")).collect()
}

/// Enqueues `jobs` in chunks of at most 10,000 (one `enqueue_all` each).
fn seed(store: &Store, jobs: usize, offset: usize) -> Duration {
    let started = Instant::now();
    let mut next = 0;
    while next < jobs {
        let end = (next + 10_000).min(jobs);
        store.enqueue(&nothing_jobs(offset + next..offset + end), chrono::Utc::now().naive_utc()).expect("enqueue");
        next = end;
    }
    started.elapsed()
}

fn per_s(count: usize, took: Duration) -> u64 {
    (count as f64 / took.as_secs_f64()) as u64
}

fn emit(mut line: serde_json::Value, backend: &str, scenario: &str) {
    let (rss, peak) = memory();
    line["backend"] = json!(backend);
    if backend == "mysql" {
        line["innodb_autoinc_lock_mode"] = json!(autoinc_lock_mode());
    }
    line["scenario"] = json!(scenario);
    line["rss_mb"] = json!((rss * 10.0).round() / 10.0);
    line["peak_rss_mb"] = json!((peak * 10.0).round() / 10.0);
    println!("{line}");
}

fn open(url: &DatabaseUrl, observer: Option<Arc<dyn Observer>>) -> SharedStore {
    let config = config(url);
    let store = Store::connect(url, config.pool_size).expect("connecting");
    let store = match observer {
        Some(observer) => store.observed_by(observer),
        None => store,
    };
    store.migrate().expect("migrating");
    Arc::new(store)
}

fn enqueue_scenario(args: &Args) {
    let db = fresh_database(&args.backend, "enqueue");
    let store = open(&db.url, None);
    let single = 2_000.min(args.jobs);
    let started = Instant::now();
    for n in 0..single {
        store.enqueue(&nothing_jobs(n..n + 1), chrono::Utc::now().naive_utc()).expect("enqueue");
    }
    let single_per_s = per_s(single, started.elapsed());
    let bulk = seed(&store, args.jobs, single);
    let big = seed(&store, args.jobs, single + args.jobs);
    emit(
        json!({
            "jobs": args.jobs,
            "single_per_s": single_per_s,
            "bulk_per_s": per_s(args.jobs, bulk),
            "bulk_big_per_s": per_s(args.jobs, big),
            "rows_before_big": single + args.jobs,
        }),
        &args.backend,
        "enqueue",
    );
}

/// Starts a runtime with the no-op handler inside `system`.
fn start(system: &SystemRunner, url: &DatabaseUrl, store: SharedStore, counter: &Counter) -> solidq::RuntimeHandle {
    let counter = counter.clone();
    system.block_on(async move {
        Runtime::with_store(config(url), store, quiet())
            .expect("a runtime")
            .register::<Nothing, _, _>(move || Noop(counter.clone()))
            .start()
            .expect("starting")
    })
}

fn drain_scenario(args: &Args) {
    let db = fresh_database(&args.backend, "drain");
    let seeded = seed(&open(&db.url, None), args.jobs, 0);
    let operations = Arc::new(Operations::default());
    let store = open(&db.url, Some(operations.clone()));
    // As after any bulk load: without statistics the planner scans tables whole.
    match &db.url {
        DatabaseUrl::Postgres(url) => {
            PgConnection::establish(url).expect("connecting").batch_execute("ANALYZE").expect("ANALYZE");
        }
        #[cfg(feature = "mysql")]
        DatabaseUrl::Mysql(url) => {
            diesel::MysqlConnection::establish(url)
                .expect("connecting")
                .batch_execute("ANALYZE TABLE solidq_jobs, solidq_ready_executions")
                .expect("ANALYZE TABLE");
        }
        _ => {}
    }
    let system = System::new();
    let counter = Counter::default();
    let started = Instant::now();
    let handle = start(&system, &db.url, store.clone(), &counter);
    let mut peak_rss: f64 = 0.0;
    system.block_on(async {
        while counter.runs.load(Ordering::Relaxed) < args.jobs {
            peak_rss = peak_rss.max(memory().0);
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let handled = started.elapsed();
    loop {
        let (counts, _) = store.counts().expect("counts");
        if counts.finished as usize >= args.jobs {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = started.elapsed();
    let report = system.block_on(handle.shutdown());
    operations.0.lock().unwrap().remove("counting jobs");
    let watch_checks = operations.0.lock().unwrap().remove(WATCHING).unwrap_or(0);
    let transactions: usize = operations.0.lock().unwrap().values().sum();
    emit(
        json!({
            "jobs": args.jobs,
            "seed_per_s": per_s(args.jobs, seeded),
            "drain_per_s": per_s(args.jobs, took),
            "handler_per_s": per_s(args.jobs, handled),
            "drain_s": (took.as_secs_f64() * 100.0).round() / 100.0,
            "rss_during_mb": (peak_rss * 10.0).round() / 10.0,
            "deregistered": report.deregistered,
            "store_transactions_per_job": (transactions as f64 / args.jobs as f64 * 10_000.0).round() / 10_000.0,
            "watch_checks": watch_checks,
            "by_operation": operations.per_job(args.jobs),
        }),
        &args.backend,
        "drain",
    );
}

/// Jobs that compose: a batch of N jobs drained (members finish through a transaction that
/// counts them) and how long after the last member its callback started; then a diamond
/// workflow of 1,000 steps (`SOLIDQ_BENCH_WORKFLOW_STEPS`: one root, the others but one side by
/// side, one sink after all of them) from enqueue to the sink's start.
fn compose_scenario(args: &Args) {
    let db = fresh_database(&args.backend, "compose");
    let store = open(&db.url, None);
    let members = nothing_jobs(0..args.jobs);
    let batch = solidq::store::composition::NewBatch {
        on_finish: Some(NewJob::from_job(&Nothing(u64::MAX), EnqueueOptions::new()).expect("callback")),
        ..Default::default()
    };
    let enqueue_started = Instant::now();
    let (batch_id, _) = store.enqueue_batch(&batch, &members, chrono::Utc::now().naive_utc()).expect("batch");
    let batch_enqueue = enqueue_started.elapsed();
    if let DatabaseUrl::Postgres(url) = &db.url {
        PgConnection::establish(url).expect("connecting").batch_execute("ANALYZE").expect("ANALYZE");
    }
    let system = System::new();
    let counter = Counter { record_starts: true, ..Counter::default() };
    let started = Instant::now();
    let handle = start(&system, &db.url, store.clone(), &counter);
    system.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(600);
        while counter.runs.load(Ordering::Relaxed) < args.jobs + 1 {
            assert!(Instant::now() < deadline, "the batch and its callback did not run within 600 s");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let batch_took = started.elapsed();
    let info = store.batch(batch_id).expect("batch").expect("the batch exists");
    assert!(info.is_finished() && info.succeeded as usize == args.jobs, "{info:?}");
    let starts = counter.started.lock().unwrap().clone();
    // The callback is the last job to start; the one before it is the last member.
    let callback_after_ms =
        starts[starts.len() - 1].saturating_duration_since(starts[starts.len() - 2]).as_secs_f64() * 1000.0;

    let steps: usize =
        std::env::var("SOLIDQ_BENCH_WORKFLOW_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000).max(3);
    let mut flow = vec![solidq::store::composition::WorkflowStep {
        job: NewJob::from_job(&Nothing(0), EnqueueOptions::new()).expect("root"),
        after: Vec::new(),
    }];
    for n in 1..steps - 1 {
        flow.push(solidq::store::composition::WorkflowStep {
            job: NewJob::from_job(&Nothing(n as u64), EnqueueOptions::new()).expect("step"),
            after: vec![(0, Default::default())],
        });
    }
    flow.push(solidq::store::composition::WorkflowStep {
        job: NewJob::from_job(&Nothing(steps as u64), EnqueueOptions::new()).expect("sink"),
        after: (1..steps - 1).map(|i| (i, Default::default())).collect(),
    });
    let before = counter.runs.load(Ordering::Relaxed);
    let flow_started = Instant::now();
    store.enqueue_workflow(&flow, chrono::Utc::now().naive_utc()).expect("workflow");
    let flow_enqueue = flow_started.elapsed();
    system.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(600);
        while counter.runs.load(Ordering::Relaxed) < before + steps {
            assert!(Instant::now() < deadline, "the workflow did not run within 600 s");
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let flow_took = flow_started.elapsed();
    let report = system.block_on(handle.shutdown());
    emit(
        json!({
            "jobs": args.jobs,
            "batch_enqueue_per_s": per_s(args.jobs, batch_enqueue),
            "batch_drain_per_s": per_s(args.jobs, batch_took),
            "callback_after_last_member_ms": (callback_after_ms * 100.0).round() / 100.0,
            "workflow_steps": steps,
            "workflow_enqueue_s": (flow_enqueue.as_secs_f64() * 1000.0).round() / 1000.0,
            "workflow_run_s": (flow_took.as_secs_f64() * 1000.0).round() / 1000.0,
            "workflow_steps_per_s": per_s(steps, flow_took),
            "deregistered": report.deregistered,
        }),
        &args.backend,
        "compose",
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[index] * 100.0).round() / 100.0
}

/// Enqueue-to-start latencies in milliseconds of `samples` jobs enqueued one at a time
/// through `queue`, sorted.
async fn sample_latencies(queue: &solidq::Queue, counter: &Counter, samples: usize) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples {
        let before = counter.started.lock().unwrap().len();
        queue.enqueue(Nothing(n as u64)).await.expect("enqueue");
        let enqueued = Instant::now();
        let deadline = enqueued + Duration::from_secs(10);
        loop {
            if let Some(start) = counter.started.lock().unwrap().get(before).copied() {
                latencies.push(start.saturating_duration_since(enqueued).as_secs_f64() * 1000.0);
                break;
            }
            assert!(Instant::now() < deadline, "job {n} did not start within 10 s");
            actix_rt::time::sleep(Duration::from_micros(200)).await;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    latencies
}

fn latency_scenario(args: &Args) {
    let db = fresh_database(&args.backend, "latency");
    let store = open(&db.url, None);
    let system = System::new();
    let counter = Counter { record_starts: true, ..Counter::default() };
    let stamped = Arc::new(Mutex::new(Vec::new()));
    let handle = {
        let (counter, stamped, url, store) = (counter.clone(), stamped.clone(), db.url.clone(), store.clone());
        system.block_on(async move {
            Runtime::with_store(config(&url), store, quiet())
                .expect("a runtime")
                .register::<Nothing, _, _>(move || Noop(counter.clone()))
                .register::<Stamped, _, _>(move || StampedHandler(stamped.clone()))
                .start()
                .expect("starting")
        })
    };
    let samples = 200;
    // In-process: the enqueue goes through the runtime's own store (an actix-web app's
    // `runtime.queue()`). Cross-process: through a store of its own, as another process would
    // (PostgreSQL tells the runtime by NOTIFY; SQLite leaves it to polling).
    let own = solidq::Queue::new(store);
    let other = solidq::Queue::new(open(&db.url, None));
    let (local, remote) = system.block_on(async {
        // Let the process register and settle.
        actix_rt::time::sleep(Duration::from_millis(1500)).await;
        let local = sample_latencies(&own, &counter, samples).await;
        let remote = sample_latencies(&other, &counter, samples / 4).await;
        (local, remote)
    });
    // Another OS process enqueues: every 30 to 60 ms, and then into a worker idle for 1.5 to
    // 2 s, longer than any polling backoff.
    let os_process = from_other_os_process(&system, &db.url, &stamped, 200, 30..60);
    let os_idle = from_other_os_process(&system, &db.url, &stamped, 8, 1500..2000);
    system.block_on(handle.shutdown());
    emit(
        json!({
            "samples": samples,
            "p50_ms": percentile(&local, 0.5),
            "p95_ms": percentile(&local, 0.95),
            "p99_ms": percentile(&local, 0.99),
            "max_ms": percentile(&local, 1.0),
            "other_process_samples": remote.len(),
            "other_process_p50_ms": percentile(&remote, 0.5),
            "other_process_p99_ms": percentile(&remote, 0.99),
            "other_os_process_samples": os_process.len(),
            "other_os_process_p50_ms": percentile(&os_process, 0.5),
            "other_os_process_p99_ms": percentile(&os_process, 0.99),
            "other_os_process_max_ms": percentile(&os_process, 1.0),
            "other_os_process_idle_samples": os_idle.len(),
            "other_os_process_idle_p50_ms": percentile(&os_idle, 0.5),
            "other_os_process_idle_max_ms": percentile(&os_idle, 1.0),
        }),
        &args.backend,
        "latency",
    );
}

/// How late scheduled jobs start: 60 jobs due over 3.3 s from half a second on, with the
/// default dispatcher (its polling interval bounds the delay).
fn schedule_scenario(args: &Args) {
    let db = fresh_database(&args.backend, "schedule");
    let store = open(&db.url, None);
    let system = System::new();
    let counter = Counter { record_lateness: true, ..Counter::default() };
    let handle = start(&system, &db.url, store.clone(), &counter);
    let jobs = 60;
    let base = chrono::Utc::now() + chrono::Duration::milliseconds(500);
    let new_jobs: Vec<NewJob> = (0..jobs)
        .map(|i| {
            let at = base + chrono::Duration::milliseconds(55 * i as i64);
            let opts = solidq::EnqueueOptions::new().run_at(at);
            NewJob::from_job(&Nothing(at.timestamp_millis() as u64), opts).expect("job")
        })
        .collect();
    store.enqueue(&new_jobs, chrono::Utc::now().naive_utc()).expect("enqueue");
    system.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while counter.lateness_ms.lock().unwrap().len() < jobs {
            assert!(Instant::now() < deadline, "scheduled jobs did not all start within 30 s");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
    });
    system.block_on(handle.shutdown());
    let mut late = counter.lateness_ms.lock().unwrap().clone();
    late.sort_by(|a, b| a.total_cmp(b));
    emit(
        json!({
            "jobs": jobs,
            "dispatcher_interval_ms": config(&db.url).dispatcher_polling_interval.as_millis() as u64,
            "late_p50_ms": percentile(&late, 0.5),
            "late_p99_ms": percentile(&late, 0.99),
            "late_max_ms": percentile(&late, 1.0),
            "early": late.iter().filter(|ms| **ms < 0.0).count(),
        }),
        &args.backend,
        "schedule",
    );
}

#[derive(diesel::QueryableByName)]
struct Transactions {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn server_transactions(url: &DatabaseUrl) -> Option<i64> {
    let DatabaseUrl::Postgres(url) = url else { return None };
    let mut conn = PgConnection::establish(url).ok()?;
    let row: Transactions = diesel::sql_query(
        "SELECT (xact_commit + xact_rollback)::int8 AS n FROM pg_stat_database WHERE datname = current_database()",
    )
    .get_result(&mut conn)
    .ok()?;
    Some(row.n)
}

fn idle_scenario(args: &Args) {
    let db = fresh_database(&args.backend, "idle");
    let operations = Arc::new(Operations::default());
    let store = open(&db.url, Some(operations.clone()));
    let system = System::new();
    let handle = start(&system, &db.url, store, &Counter::default());
    system.block_on(async { actix_rt::time::sleep(Duration::from_secs(3)).await });
    let window = Duration::from_secs(10);
    let before = operations.0.lock().unwrap().clone();
    // pg_stat_database is updated by the server with a delay: read it around a longer window.
    let server_before = server_transactions(&db.url);
    let cpu_before = cpu_time();
    system.block_on(async { actix_rt::time::sleep(window).await });
    let cpu = cpu_time().saturating_sub(cpu_before);
    let after = operations.0.lock().unwrap().clone();
    std::thread::sleep(Duration::from_millis(600));
    let server_after = server_transactions(&db.url);
    let mut per_operation = serde_json::Map::new();
    let (mut total, mut heartbeats, mut watch_checks) = (0usize, 0usize, 0usize);
    for (operation, count) in &after {
        let count = count - before.get(operation).copied().unwrap_or(0);
        if count == 0 {
            continue;
        }
        match *operation {
            "writing the heartbeat" => heartbeats += count,
            // SQLite's PRAGMA data_version: reads no table, takes no lock a writer waits for.
            WATCHING => watch_checks += count,
            _ => total += count,
        }
        per_operation.insert(operation.to_string(), json!(count as f64 / window.as_secs_f64()));
    }
    let (rss, _) = memory();
    system.block_on(handle.shutdown());
    emit(
        json!({
            "window_s": window.as_secs(),
            "operations_per_s": total as f64 / window.as_secs_f64(),
            "heartbeats_per_s": heartbeats as f64 / window.as_secs_f64(),
            "watch_checks_per_s": watch_checks as f64 / window.as_secs_f64(),
            "cpu_ms_per_s": (cpu.as_secs_f64() * 1000.0 / window.as_secs_f64() * 10.0).round() / 10.0,
            "by_operation_per_s": per_operation,
            "server_transactions_per_s": server_before.zip(server_after).map(|(b, a)| (a - b) as f64 / window.as_secs_f64()),
            "idle_rss_mb": (rss * 10.0).round() / 10.0,
            "worker_slots": config(&db.url).total_concurrency(),
        }),
        &args.backend,
        "idle",
    );
}

/// `url` as `SOLIDQ_DATABASE_URL` spells it.
fn url_text(url: &DatabaseUrl) -> String {
    match url {
        DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        DatabaseUrl::Postgres(url) | DatabaseUrl::Mysql(url) => url.clone(),
    }
}

#[cfg(feature = "mysql")]
#[derive(diesel::QueryableByName)]
struct AutoincLockMode {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    mode: i64,
}

/// The MySQL server's `@@innodb_autoinc_lock_mode` (`None` if it cannot be read): 0 or 1 give a
/// multi-row INSERT consecutive ids, so a bulk enqueue is one INSERT per batch; 2 (MySQL 8's
/// default) does not, and the store falls back to one INSERT per job.
#[cfg(feature = "mysql")]
fn autoinc_lock_mode() -> Option<i64> {
    let admin = std::env::var("SOLIDQ_BENCH_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".into());
    let admin = match std::env::var("SOLIDQ_DATABASE_URL") {
        Ok(url) if url.starts_with("mysql://") => url,
        _ => admin,
    };
    let mut conn = diesel::MysqlConnection::establish(&admin).ok()?;
    let row: AutoincLockMode =
        diesel::sql_query("SELECT CAST(@@innodb_autoinc_lock_mode AS SIGNED) AS mode").get_result(&mut conn).ok()?;
    Some(row.mode)
}

/// No MySQL backend in this build.
#[cfg(not(feature = "mysql"))]
fn autoinc_lock_mode() -> Option<i64> {
    None
}

fn main() {
    let raw: Vec<String> = std::env::args().collect();
    if let [_, flag, url, jobs, min_ms, max_ms] = raw.as_slice() {
        if flag == "--enqueue-child" {
            let number = |text: &String| text.parse().expect("a number");
            enqueue_child(url, jobs.parse().expect("a number of jobs"), number(min_ms)..number(max_ms));
            return;
        }
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("bench: {err}");
            std::process::exit(2);
        }
    };
    let all = args.scenario == "all";
    if all || args.scenario == "idle" {
        idle_scenario(&args);
    }
    if all || args.scenario == "enqueue" {
        enqueue_scenario(&args);
    }
    if all || args.scenario == "latency" {
        latency_scenario(&args);
    }
    if all || args.scenario == "schedule" {
        schedule_scenario(&args);
    }
    if all || args.scenario == "drain" {
        drain_scenario(&args);
    }
    if all || args.scenario == "compose" {
        compose_scenario(&args);
    }
}
