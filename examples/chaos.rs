//! Chaos test: `cargo run --release --example chaos -- --jobs N --workers W --kills K
//! [--victim random|leader]`.
//!
//! Against `SOLIDQ_DATABASE_URL`, starts W worker OS processes of its own (this binary with
//! `--worker`), enqueues N jobs whose handler records each execution in an application table of
//! the same database and works 0–50 ms, then K times sends SIGKILL, SIGTERM or SIGQUIT to a
//! worker and starts a replacement. The victim is a random worker, or with `--victim leader`
//! the current maintenance leader (read as `examples/support/leader.rs` reads it: the
//! `solidq_leaders` row, or without that table the live process with the lowest id); then it
//! also measures the time until a leader of a later election is seen. For each
//! SIGKILL/SIGQUIT it measures the time until none of the victim's claims is held by it any
//! more (each is ready, or running elsewhere). It waits for the queue to drain and prints
//! `backend=B jobs=N completed=C lost=L duplicates=D kills=K max_recovery_ms=M victim=V`, and
//! with `--victim leader` also `leader_source=S max_new_leader_ms=M`.
//! Exits non-zero when a job is lost, or a job ran twice without an execution cut short by a
//! SIGKILL/SIGQUIT to explain it.

use std::collections::{HashMap, HashSet};
#[path = "support/leader.rs"]
mod leader;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer};
#[cfg(feature = "mysql")]
use diesel::MysqlConnection;
use diesel::{PgConnection, SqliteConnection};
use serde::{Deserialize, Serialize};
use solidq::{Config, DatabaseUrl, EnqueueOptions, Job, JobError, NewJob, Perform, Runtime, SharedStore, Store};

#[derive(Serialize, Deserialize)]
struct ChaosJob {
    seq: u32,
    work_ms: u64,
}

impl Job for ChaosJob {
    const KIND: &'static str = "chaos.work";
    // Kills may interrupt one job several times; it must still finish, not fail.
    const MAX_ATTEMPTS: i32 = 50;
}

/// The application's own connection, to record executions next to the jobs.
enum AppDb {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
    #[cfg(feature = "mysql")]
    Mysql(MysqlConnection),
}

#[derive(QueryableByName)]
struct Execution {
    #[diesel(sql_type = BigInt)]
    job_id: i64,
    #[diesel(sql_type = Integer)]
    pid: i32,
    #[diesel(sql_type = Integer)]
    finished: i32,
}

impl AppDb {
    fn open(url: &DatabaseUrl) -> Result<AppDb, Box<dyn std::error::Error>> {
        Ok(match url {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
                diesel::sql_query("PRAGMA busy_timeout = 30000").execute(&mut conn)?;
                AppDb::Sqlite(conn)
            }
            DatabaseUrl::Postgres(url) => AppDb::Pg(PgConnection::establish(url)?),
            #[cfg(feature = "mysql")]
            DatabaseUrl::Mysql(url) => AppDb::Mysql(MysqlConnection::establish(url)?),
            #[cfg(not(feature = "mysql"))]
            DatabaseUrl::Mysql(_) => return Err("a mysql:// URL needs `--features mysql`".into()),
        })
    }

    fn reset(&mut self) -> QueryResult<()> {
        let create = "CREATE TABLE IF NOT EXISTS chaos_executions (job_id BIGINT NOT NULL, pid INTEGER NOT NULL, finished INTEGER NOT NULL DEFAULT 0)";
        match self {
            AppDb::Sqlite(c) => {
                diesel::sql_query(create).execute(c)?;
                diesel::sql_query("DELETE FROM chaos_executions").execute(c)?;
            }
            AppDb::Pg(c) => {
                diesel::sql_query(create).execute(c)?;
                diesel::sql_query("DELETE FROM chaos_executions").execute(c)?;
            }
            #[cfg(feature = "mysql")]
            AppDb::Mysql(c) => {
                diesel::sql_query(create).execute(c)?;
                diesel::sql_query("DELETE FROM chaos_executions").execute(c)?;
            }
        }
        Ok(())
    }

    fn started(&mut self, job_id: i64, pid: i32) -> QueryResult<()> {
        match self {
            AppDb::Sqlite(c) => diesel::sql_query("INSERT INTO chaos_executions (job_id, pid) VALUES (?, ?)")
                .bind::<BigInt, _>(job_id)
                .bind::<Integer, _>(pid)
                .execute(c),
            AppDb::Pg(c) => diesel::sql_query("INSERT INTO chaos_executions (job_id, pid) VALUES ($1, $2)")
                .bind::<BigInt, _>(job_id)
                .bind::<Integer, _>(pid)
                .execute(c),
            #[cfg(feature = "mysql")]
            AppDb::Mysql(c) => diesel::sql_query("INSERT INTO chaos_executions (job_id, pid) VALUES (?, ?)")
                .bind::<BigInt, _>(job_id)
                .bind::<Integer, _>(pid)
                .execute(c),
        }
        .map(|_| ())
    }

    fn finished(&mut self, job_id: i64, pid: i32) -> QueryResult<()> {
        match self {
            AppDb::Sqlite(c) => {
                diesel::sql_query("UPDATE chaos_executions SET finished = 1 WHERE job_id = ? AND pid = ?")
                    .bind::<BigInt, _>(job_id)
                    .bind::<Integer, _>(pid)
                    .execute(c)
            }
            AppDb::Pg(c) => {
                diesel::sql_query("UPDATE chaos_executions SET finished = 1 WHERE job_id = $1 AND pid = $2")
                    .bind::<BigInt, _>(job_id)
                    .bind::<Integer, _>(pid)
                    .execute(c)
            }
            #[cfg(feature = "mysql")]
            AppDb::Mysql(c) => {
                diesel::sql_query("UPDATE chaos_executions SET finished = 1 WHERE job_id = ? AND pid = ?")
                    .bind::<BigInt, _>(job_id)
                    .bind::<Integer, _>(pid)
                    .execute(c)
            }
        }
        .map(|_| ())
    }

    fn executions(&mut self) -> QueryResult<Vec<Execution>> {
        let sql = "SELECT job_id, pid, finished FROM chaos_executions";
        match self {
            AppDb::Sqlite(c) => diesel::sql_query(sql).load(c),
            AppDb::Pg(c) => diesel::sql_query(sql).load(c),
            #[cfg(feature = "mysql")]
            AppDb::Mysql(c) => diesel::sql_query(sql).load(c),
        }
    }
}

/// Blocking handler: records the execution, works, records the finish.
struct ChaosWorker {
    db: AppDb,
}

impl Actor for ChaosWorker {
    type Context = SyncContext<Self>;
}

impl Handler<Perform<ChaosJob>> for ChaosWorker {
    type Result = Result<(), JobError>;

    fn handle(&mut self, msg: Perform<ChaosJob>, _: &mut SyncContext<Self>) -> Self::Result {
        let pid = std::process::id() as i32;
        self.db.started(msg.meta.id, pid).map_err(|e| JobError::new(e.to_string()))?;
        std::thread::sleep(Duration::from_millis(msg.job.work_ms));
        self.db.finished(msg.meta.id, pid).map_err(|e| JobError::new(e.to_string()))?;
        Ok(())
    }
}

/// Which worker each kill targets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Victim {
    Random,
    /// The current maintenance leader.
    Leader,
}

struct Args {
    jobs: u32,
    workers: usize,
    kills: usize,
    victim: Victim,
    worker_mode: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { jobs: 3000, workers: 3, kills: 12, victim: Victim::Random, worker_mode: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--jobs" => args.jobs = value("--jobs")?.parse().map_err(|e| format!("--jobs: {e}"))?,
            "--workers" => args.workers = value("--workers")?.parse().map_err(|e| format!("--workers: {e}"))?,
            "--kills" => args.kills = value("--kills")?.parse().map_err(|e| format!("--kills: {e}"))?,
            "--victim" => {
                args.victim = match value("--victim")?.as_str() {
                    "random" => Victim::Random,
                    "leader" => Victim::Leader,
                    other => return Err(format!("--victim is random or leader, not {other:?}")),
                }
            }
            "--worker" => args.worker_mode = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --jobs N --workers W --kills K [--victim random|leader])"
                ))
            }
        }
    }
    if args.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    Ok(args)
}

fn main() {
    let result =
        parse_args().map_err(|e| e.into()).and_then(|args| if args.worker_mode { worker() } else { controller(args) });
    if let Err(err) = result {
        eprintln!("chaos: {err}");
        std::process::exit(1);
    }
}

fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let url = Config::from_env()?.database_url;
    let runtime = Runtime::from_env()?;
    let threads = runtime.config().total_concurrency();
    let runtime = runtime.register_sync::<ChaosJob, _, _>(threads, move || ChaosWorker {
        db: AppDb::open(&url).expect("the chaos worker cannot open the application database"),
    });
    runtime.run()?;
    Ok(())
}

/// Settings every worker gets unless the caller set them: fast polling and liveness.
const WORKER_DEFAULTS: &[(&str, &str)] = &[
    ("SOLIDQ_POLLING_INTERVAL", "50ms"),
    ("SOLIDQ_HEARTBEAT_INTERVAL", "1s"),
    ("SOLIDQ_ALIVE_THRESHOLD", "10s"),
    ("SOLIDQ_WATCHDOG_INTERVAL", "200ms"),
    ("SOLIDQ_DISPATCHER_POLLING_INTERVAL", "200ms"),
    ("SOLIDQ_SHUTDOWN_TIMEOUT", "5s"),
    ("SOLIDQ_WORKERS", "*:4"),
    ("SOLIDQ_LOG", "warn"),
];

fn spawn_worker() -> std::io::Result<Child> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--worker");
    for (name, value) in WORKER_DEFAULTS {
        if std::env::var_os(name).is_none() {
            cmd.env(name, value);
        }
    }
    cmd.spawn()
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we spawned and a valid signal number.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// The index in `workers` of the current maintenance leader, waiting up to 30 s for a leader
/// that is one of them (after a kill the row names the dead leader until the next election),
/// and the leader as read.
fn leader_index(
    store: &Store,
    conn: &mut solidq::DbConnection,
    workers: &[Child],
) -> Result<(usize, leader::Leader), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(current) = leader::current(conn, store)? {
            let pid = store.processes()?.into_iter().find(|p| p.id == current.process_id).map(|p| p.pid as u32);
            if let Some(index) = pid.and_then(|pid| workers.iter().position(|w| w.id() == pid)) {
                return Ok((index, current));
            }
        }
        if Instant::now() > deadline {
            return Err("no worker was the maintenance leader within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The process rows of the worker with OS pid `pid` (the workers all run on this host).
fn process_ids_of(store: &Store, pid: u32) -> Vec<i64> {
    store
        .processes()
        .map(|rows| rows.into_iter().filter(|p| p.pid == pid as i32).map(|p| p.id).collect())
        .unwrap_or_default()
}

fn controller(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let store: SharedStore = solidq::store::connect(&config.database_url, 4)?;
    store.migrate()?;
    let mut app = AppDb::open(&config.database_url)?;
    app.reset()?;
    let backend = store.backend();
    // The leader is read on a connection of its own, as solidq's application pools open them.
    let leader_pool = match args.victim {
        Victim::Leader => Some(solidq::store::connection::app_pool(&config.database_url, 1)?),
        Victim::Random => None,
    };
    let mut leader_conn = leader_pool.as_ref().map(|pool| pool.get()).transpose()?;
    let mut new_leader_times: Vec<u128> = Vec::new();
    let mut leader_source = None;

    let mut ids = Vec::with_capacity(args.jobs as usize);
    let new: Vec<NewJob> = (0..args.jobs)
        .map(|seq| NewJob::from_job(&ChaosJob { seq, work_ms: fastrand::u64(0..=50) }, EnqueueOptions::new()))
        .collect::<Result<_, _>>()?;
    for chunk in new.chunks(500) {
        ids.extend(store.enqueue(chunk, Utc::now().naive_utc())?);
    }
    let job_ids: HashSet<i64> = ids.iter().copied().collect();
    eprintln!("chaos: {} jobs enqueued on {backend}; starting {} workers", ids.len(), args.workers);

    let mut workers: Vec<Child> = (0..args.workers).map(|_| spawn_worker()).collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut victims: HashSet<i32> = HashSet::new();
    let mut recoveries: Vec<u128> = Vec::new();

    for kill in 0..args.kills {
        std::thread::sleep(Duration::from_millis(fastrand::u64(300..=900)));
        let (index, leader_before) = match leader_conn.as_mut() {
            Some(conn) => {
                let (index, current) = leader_index(&store, conn, &workers)?;
                leader_source = Some(current.source);
                (index, Some(current))
            }
            None => (fastrand::usize(..workers.len()), None),
        };
        // Only kill a worker that has registered, so its claims can be watched.
        let pid = workers[index].id();
        let mut processes = process_ids_of(store.as_ref(), pid);
        let wait_start = Instant::now();
        while processes.is_empty() && wait_start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
            processes = process_ids_of(store.as_ref(), pid);
        }
        let (name, sig) =
            [("SIGKILL", libc::SIGKILL), ("SIGTERM", libc::SIGTERM), ("SIGQUIT", libc::SIGQUIT)][fastrand::usize(..3)];
        let claimed_before: usize = processes.iter().map(|p| store.claims_of(*p).map(|c| c.len()).unwrap_or(0)).sum();
        let sent = Instant::now();
        signal(&workers[index], sig);
        let mut victim = workers.swap_remove(index);
        // With `--victim leader`: until a leader of a later election is seen, from the signal on.
        let mut new_leader_ms: Option<u128> = None;
        let mut watch_leader = || -> Result<bool, Box<dyn std::error::Error>> {
            let (Some(conn), Some(before)) = (leader_conn.as_mut(), leader_before) else { return Ok(true) };
            if new_leader_ms.is_none() && leader::current(conn, &store)?.is_some_and(|now| now.replaces(&before)) {
                new_leader_ms = Some(sent.elapsed().as_millis());
            }
            Ok(new_leader_ms.is_some())
        };
        if sig == libc::SIGTERM {
            let status = victim.wait()?;
            if !status.success() {
                return Err(format!("worker {pid} exited with {status} after SIGTERM (expected 0)").into());
            }
            eprintln!(
                "chaos: kill {}/{}: SIGTERM to {pid}: drained and exited 0 in {} ms",
                kill + 1,
                args.kills,
                sent.elapsed().as_millis()
            );
            while !watch_leader()? {
                if sent.elapsed() > Duration::from_secs(120) {
                    return Err(format!("no new leader within 120 s of stopping leader {pid}").into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            victims.insert(pid as i32);
            victim.wait()?;
            // Recovery: until the dead process holds no claim any more.
            let mut recovered: Option<u128> = None;
            loop {
                if recovered.is_none() {
                    let held: usize =
                        processes.iter().map(|p| store.claims_of(*p).map(|c| c.len()).unwrap_or(usize::MAX)).sum();
                    if held == 0 {
                        recovered = Some(sent.elapsed().as_millis());
                    }
                }
                let leader_seen = watch_leader()?;
                if recovered.is_some() && leader_seen {
                    break;
                }
                if recovered.is_some() && sent.elapsed() > Duration::from_secs(120) {
                    return Err(format!("no new leader within 120 s of killing leader {pid}").into());
                }
                if sent.elapsed() > Duration::from_secs(120) {
                    return Err(format!("claims of killed worker {pid} were not recovered within 120 s").into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let ms = recovered.unwrap_or_default();
            recoveries.push(ms);
            eprintln!(
                "chaos: kill {}/{}: {name} to {pid} holding {claimed_before} claims: recovered in {ms} ms",
                kill + 1,
                args.kills
            );
        }
        if let (Some(ms), Some(before)) = (new_leader_ms, leader_before) {
            eprintln!(
                "chaos: kill {}/{}: leader {} ({} term {:?}) replaced after {ms} ms",
                kill + 1,
                args.kills,
                before.process_id,
                before.source.name(),
                before.term
            );
            new_leader_times.push(ms);
        }
        workers.push(spawn_worker()?);
    }

    // Wait for the queue to drain.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (counts, _) = store.counts()?;
        if counts.ready + counts.claimed + counts.scheduled == 0 {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("chaos: queue did not drain within 600 s: {counts:?}");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();
    for w in &workers {
        signal(w, libc::SIGTERM);
    }
    for mut w in workers {
        let _ = w.wait();
    }

    let mut completed = 0;
    for id in &ids {
        if store.job(*id)?.is_some_and(|j| j.state == Some(solidq::model::JobState::Finished)) {
            completed += 1;
        }
    }
    let lost = ids.len() - completed;
    let mut per_job: HashMap<i64, Vec<Execution>> = HashMap::new();
    for e in app.executions()? {
        if job_ids.contains(&e.job_id) {
            per_job.entry(e.job_id).or_default().push(e);
        }
    }
    let mut duplicates = 0;
    let mut unexplained = Vec::new();
    for (job, runs) in &per_job {
        if runs.len() > 1 {
            duplicates += runs.len() - 1;
            // Every execution but one must have been cut short by a SIGKILL/SIGQUIT victim's death,
            // or have finished on a victim just before it died (its outcome never recorded).
            let by_victims = runs.iter().filter(|r| victims.contains(&r.pid)).count();
            if by_victims < runs.len() - 1 {
                unexplained.push(*job);
            }
        }
    }
    let unfinished_runs = per_job.values().flatten().filter(|r| r.finished == 0 && !victims.contains(&r.pid)).count();
    let leader_figures = match leader_source {
        Some(source) => format!(
            " leader_source={} max_new_leader_ms={}",
            source.name(),
            new_leader_times.iter().max().copied().unwrap_or(0)
        ),
        None => String::new(),
    };
    println!(
        "backend={backend} jobs={} completed={completed} lost={lost} duplicates={duplicates} kills={} max_recovery_ms={} \
         victim={}{leader_figures}",
        ids.len(),
        args.kills,
        recoveries.iter().max().copied().unwrap_or(0),
        if args.victim == Victim::Leader { "leader" } else { "random" },
    );
    eprintln!(
        "chaos: {:.1} s, {:.0} jobs/s, recoveries (ms): {recoveries:?}, unexplained duplicates: {}, executions cut short outside victims: {unfinished_runs}",
        elapsed.as_secs_f64(),
        ids.len() as f64 / elapsed.as_secs_f64(),
        unexplained.len()
    );
    if lost > 0 || !unexplained.is_empty() {
        return Err(format!(
            "{lost} jobs lost, {} unexplained duplicates (jobs {:?})",
            unexplained.len(),
            &unexplained[..unexplained.len().min(10)]
        )
        .into());
    }
    Ok(())
}
