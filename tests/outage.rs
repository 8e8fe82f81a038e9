//! Database outages in the middle of a run (Solid Queue #683, #512, #133, #309, #385):
//! - PostgreSQL or MySQL unreachable for 20 s: the runtime connects through a TCP proxy that the test
//!   cuts (every open connection closed, new ones closed at once) and restores. 20 s is longer
//!   than the alive threshold, so the heartbeat also fences the process and lifts the fence.
//! - A SQLite file locked by another process (the `sqlite3` shell if installed, otherwise a
//!   second connection on a thread) for longer than the store's busy timeout.
//!
//! In both: nothing panics, no job is lost, at most the jobs running at the cut run twice,
//! processing resumes within 5 s of the database returning, errors are logged with backoff
//! (not once per poll), the runtime fences itself and resumes, the host's actix System and
//! its actors keep running, and the runtime still shuts down cleanly.
//!
//! A third test cuts PostgreSQL exactly between a claim's commit and its reply (Solid Queue
//! #748's cousin): the claim is committed but the worker saw an error; the job must still run.
//! (It has no MySQL twin yet: the proxy would have to parse MySQL's protocol to find the reply
//! to a claim's COMMIT.)
//!
//! The tests run one after another (they count panics process-wide and measure times).
//! `SOLIDQ_TEST_LOG=1` echoes the runtime's log to stderr.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use common::fixtures::{Executions, Step, Stepper};
use common::log::LogRecorder;
use common::outage::{server_of, via, LockOutage, Outage, Proxy, ProxyOutage};
use common::{wait_for, TestDb};
use solidq::config::{Config, WorkerGroup};
use solidq::model::QueuePattern;
use solidq::store::connection::SQLITE_BUSY_TIMEOUT;
use solidq::{DatabaseUrl, Runtime};

/// Jobs run at once by the runtime under test: the most that may run twice.
const CONCURRENCY: usize = 3;
/// Jobs per scenario.
const JOBS: i64 = 200;
/// Each job's run time.
const JOB_MS: u64 = 20;
/// The requirement: processing resumes this soon after the database returns.
const RESUME_WITHIN: Duration = Duration::from_secs(5);
/// Error lines allowed during an outage. One line per failed poll would be about a thousand
/// (a 20 ms polling interval over 20 s); backoff logs the 1st, 2nd, 4th, 8th... failure of
/// each of the ~6 periodic calls.
const MAX_ERROR_LINES: usize = 60;

// --- serialisation and panic counting ---------------------------------------------------------

/// Held by each test for its whole run.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Panics in this process (any thread) since the hook was installed.
fn panics() -> &'static AtomicUsize {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            COUNT.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    &COUNT
}

// --- a host actor ---------------------------------------------------------------------------------

/// The host application's own actor, on the System's arbiter: ticks every 50 ms and keeps the
/// longest gap between ticks (the event loop was blocked or the System stopped).
struct HostPulse {
    last: Instant,
    longest_gap: Duration,
    ticks: usize,
}

impl Actor for HostPulse {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_millis(50), |act, _| {
            act.longest_gap = act.longest_gap.max(act.last.elapsed());
            act.last = Instant::now();
            act.ticks += 1;
        });
    }
}

#[derive(Message)]
#[rtype(result = "(usize, Duration)")]
struct HowAreYou;

impl Handler<HowAreYou> for HostPulse {
    type Result = MessageResult<HowAreYou>;
    fn handle(&mut self, _: HowAreYou, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.ticks, self.longest_gap.max(self.last.elapsed())))
    }
}

// --- the scenario -----------------------------------------------------------------------------------

fn config(url: DatabaseUrl, alive_threshold: Duration) -> Config {
    Config {
        database_url: url,
        pool_size: 4,
        workers: vec![WorkerGroup { queues: vec![QueuePattern::All], concurrency: CONCURRENCY }],
        polling_interval: Duration::from_millis(20),
        dispatcher_polling_interval: Duration::from_millis(50),
        heartbeat_interval: Duration::from_millis(200),
        alive_threshold,
        watchdog_interval: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

fn finished(db: &TestDb) -> i64 {
    db.store.counts().expect("counting jobs (direct connection)").0.finished
}

/// How the database goes away and comes back.
async fn outage_scenario(
    name: &str,
    db: &TestDb,
    runtime_url: DatabaseUrl,
    alive_threshold: Duration,
    length: Duration,
    mut outage: impl Outage,
) {
    let panics_before = panics().load(Ordering::SeqCst);
    let host = HostPulse { last: Instant::now(), longest_gap: Duration::ZERO, ticks: 0 }.start();
    let log = LogRecorder::new();
    let seen: Executions = Arc::default();
    let handler_seen = seen.clone();
    let runtime = Runtime::new(config(runtime_url, alive_threshold), log.logger())
        .expect("building the runtime")
        .register::<Step, _, _>(move || Stepper { seen: handler_seen.clone() });
    let ids =
        runtime.queue().enqueue_all((1..=JOBS).map(|n| Step { n, panic: false, sleep_ms: JOB_MS })).await.unwrap();
    let started = Instant::now();
    let handle = runtime.start().expect("starting the runtime");

    wait_for("20 jobs to finish", Duration::from_secs(20), || finished(db) >= 20).await;
    outage.begin().await;
    let cut_at = Instant::now();
    let finished_at_cut = finished(db);
    assert!(finished_at_cut < JOBS - 20, "the outage must strike while jobs are pending ({finished_at_cut} done)");
    actix_rt::time::sleep(length).await;
    let finished_at_restore = finished(db);
    let executions_at_restore = seen.lock().unwrap().len();
    let restored_at = outage.end().await;
    assert!(System::try_current().is_some(), "the host's System is gone");

    // Processing resumes: an outcome is recorded, and a job is claimed and starts.
    let (mut recorded_after, mut started_after) = (None, None);
    let deadline = restored_at + Duration::from_secs(20);
    while recorded_after.is_none() || started_after.is_none() {
        assert!(Instant::now() < deadline, "[{name}] processing did not resume within 20 s of the database returning");
        if recorded_after.is_none() && finished(db) > finished_at_restore {
            recorded_after = Some(restored_at.elapsed());
        }
        if started_after.is_none() {
            started_after =
                seen.lock().unwrap().iter().find(|(_, at)| *at > restored_at).map(|(_, at)| *at - restored_at);
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let (recorded_after, started_after) = (recorded_after.unwrap(), started_after.unwrap());

    let finish_deadline = Instant::now() + Duration::from_secs(30);
    while finished(db) < JOBS && Instant::now() < finish_deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    if finished(db) < JOBS {
        let process = handle.process_id().await;
        let claims = process.map(|p| db.store.claims_of(p).unwrap());
        let ran: HashSet<i64> = seen.lock().unwrap().iter().map(|(n, _)| *n).collect();
        let unfinished: Vec<String> = ids
            .iter()
            .zip(1..)
            .filter_map(|(id, n)| {
                let job = db.store.job(*id).unwrap()?;
                (job.state != Some(solidq::model::JobState::Finished)).then(|| {
                    format!("job {id} (n={n}): {:?} attempts={} executed={}", job.state, job.attempts, ran.contains(&n))
                })
            })
            .collect();
        panic!(
            "[{name}] not every job finished 30 s after the restore: {:?}; unfinished: {unfinished:?}; process \
             {process:?} holds claims {claims:?}",
            db.store.counts().unwrap().0
        );
    }
    let all_done = started.elapsed();
    let report = handle.shutdown().await;

    // --- what happened -----------------------------------------------------------------
    let outage_errors = log.errors_between(cut_at, restored_at);
    let errors_after = log.errors_between(restored_at, Instant::now());
    let fenced_at = log.first("fencing this process", cut_at);
    let resumed_at = log.first("resuming", cut_at).or_else(|| log.first("registered again", cut_at));
    let restarts = log.count("child actor is down");
    let executions = seen.lock().unwrap().clone();
    let mut runs: BTreeMap<i64, Vec<Instant>> = BTreeMap::new();
    for (n, at) in &executions {
        runs.entry(*n).or_default().push(*at);
    }
    let duplicated: Vec<i64> = runs.iter().filter(|(_, at)| at.len() > 1).map(|(n, _)| *n).collect();
    let duplicates = executions.len() - runs.len();
    let (host_ticks, host_gap) = host.send(HowAreYou).await.expect("the host actor answers after the outage");
    let states: HashSet<String> = ids.iter().map(|id| db.state(*id)).collect();

    eprintln!(
        "[{name}] outage {length:?}: finished at cut {finished_at_cut}, at restore {finished_at_restore} \
         (executions by then {executions_at_restore}); after restore: first outcome recorded in {recorded_after:?}, \
         first new job started in {started_after:?}; all {JOBS} finished {all_done:?} after start"
    );
    eprintln!(
        "[{name}] error lines: {} during the outage, {} after it; fenced {:?} into the outage, resumed {:?} after \
         the restore; executions {} for {} jobs (duplicates {duplicates}: {duplicated:?}); child restarts \
         {restarts}; host actor ticks {host_ticks}, longest gap {host_gap:?}; shutdown {report:?}",
        outage_errors.len(),
        errors_after.len(),
        fenced_at.map(|at| at - cut_at),
        resumed_at.map(|at| at.saturating_duration_since(restored_at)),
        executions.len(),
        runs.len(),
    );
    for line in &outage_errors {
        eprintln!("[{name}]   error during the outage: {line}");
    }
    for line in &errors_after {
        eprintln!("[{name}]   error after the outage: {line}");
    }

    // --- the requirements ----------------------------------------------------------------
    assert_eq!(panics().load(Ordering::SeqCst), panics_before, "something panicked");
    assert_eq!(restarts, 0, "no child actor may crash or get stuck because of the outage");
    assert_eq!(states, HashSet::from(["finished".to_string()]), "every job finished, none lost");
    assert_eq!(runs.len() as i64, JOBS, "every job ran");
    assert!(duplicates <= CONCURRENCY, "{duplicates} duplicate executions; at most the {CONCURRENCY} running jobs");
    for n in &duplicated {
        assert!(runs[n][0] < cut_at, "job {n} ran twice but was not running when the outage began");
    }
    assert!(recorded_after < RESUME_WITHIN, "first outcome recorded {recorded_after:?} after the database returned");
    assert!(started_after < RESUME_WITHIN, "first new job started {started_after:?} after the database returned");
    assert!(
        outage_errors.len() < MAX_ERROR_LINES,
        "{} error lines during a {length:?} outage: errors must be logged with backoff",
        outage_errors.len()
    );
    assert!(!outage_errors.is_empty(), "the outage must be visible in the log");
    // A heartbeat that failed later than the alive threshold into the outage fences the
    // process. (On SQLite the heartbeat can instead wait in line for the one writer connection
    // and get through just as the lock goes: it never failed, nobody could reap the process
    // meanwhile, and there is nothing to fence.)
    let failed_late = log.first("heartbeat failed", cut_at + alive_threshold).is_some_and(|at| at < restored_at);
    if failed_late {
        let fenced_at =
            fenced_at.expect("longer than the alive threshold without a heartbeat: the process fences itself");
        assert!(fenced_at < restored_at, "fenced during the outage");
    }
    if fenced_at.is_some() {
        let resumed_at = resumed_at.expect("the fence is lifted once the database answers");
        assert!(resumed_at >= restored_at);
    }
    assert!(host_gap < Duration::from_secs(2), "the host's event loop stalled for {host_gap:?}");
    assert!(System::try_current().is_some(), "the host's System is gone");
    assert!(report.deregistered, "clean shutdown after the outage: {report:?}");
    assert_eq!((report.abandoned, report.released), (0, 0), "nothing left running at shutdown: {report:?}");
    assert!(db.store.processes().unwrap().is_empty(), "the process deregistered");
}

#[test]
fn postgres_outage_of_20s_loses_nothing_and_resumes_quickly() {
    let _serial = serial();
    let Some(db) = TestDb::postgres() else { return };
    let direct = db.postgres_url().unwrap().to_string();
    let proxy = Proxy::start(server_of(&direct));
    let url = via(&direct, proxy.addr);
    eprintln!("runtime connects through the proxy: {url}");
    System::new().block_on(outage_scenario(
        "postgres",
        &db,
        DatabaseUrl::Postgres(url),
        Duration::from_secs(10),
        Duration::from_secs(20),
        ProxyOutage(proxy),
    ));
}

#[test]
fn mysql_outage_of_20s_loses_nothing_and_resumes_quickly() {
    let _serial = serial();
    let Some(db) = TestDb::mysql() else { return };
    let direct = db.mysql_url().unwrap().to_string();
    let proxy = Proxy::start(server_of(&direct));
    let url = via(&direct, proxy.addr);
    eprintln!("runtime connects through the proxy: {url}");
    System::new().block_on(outage_scenario(
        "mysql",
        &db,
        DatabaseUrl::Mysql(url),
        Duration::from_secs(10),
        Duration::from_secs(20),
        ProxyOutage(proxy),
    ));
}

#[test]
fn sqlite_file_locked_by_another_process_loses_nothing_and_resumes() {
    let _serial = serial();
    let db = TestDb::sqlite();
    let DatabaseUrl::Sqlite(path) = db.url.clone() else { unreachable!() };
    // Held past the busy timeout, so that store calls really fail; the alive threshold is
    // shorter than the busy timeout, so that the first failed heartbeat fences the process.
    let length = SQLITE_BUSY_TIMEOUT + Duration::from_secs(2);
    System::new().block_on(outage_scenario(
        "sqlite",
        &db,
        db.url.clone(),
        Duration::from_secs(4),
        length,
        LockOutage { path, locker: None },
    ));
}

/// Three live processes share the database through an outage longer than their alive
/// threshold. Each one's heartbeat is old when the database returns only because nobody could
/// write: the first watchdog back must not reap the others, and a job whose outcome was kept
/// through the outage must not run again elsewhere.
async fn live_processes_outlast_an_outage(
    name: &str,
    db: &TestDb,
    runtime_url: DatabaseUrl,
    alive_threshold: Duration,
    length: Duration,
    mut outage: impl Outage,
) {
    const FLEET: usize = 3;
    const FLEET_JOBS: i64 = 60;
    let log = LogRecorder::new();
    let seen: Executions = Arc::default();
    let mut handles = Vec::new();
    let mut queue = None;
    for _ in 0..FLEET {
        let handler_seen = seen.clone();
        let runtime = Runtime::new(config(runtime_url.clone(), alive_threshold), log.logger())
            .expect("building a runtime")
            .register::<Step, _, _>(move || Stepper { seen: handler_seen.clone() });
        queue.get_or_insert_with(|| runtime.queue());
        handles.push(runtime.start().expect("starting a runtime"));
    }
    let ids =
        queue.unwrap().enqueue_all((1..=FLEET_JOBS).map(|n| Step { n, panic: false, sleep_ms: 300 })).await.unwrap();
    let mut identities = Vec::new();
    for handle in &handles {
        let started = Instant::now();
        let id = loop {
            if let Some(id) = handle.process_id().await {
                break id;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "[{name}] a runtime never registered");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        };
        identities.push(id);
    }
    wait_for("10 jobs to finish", Duration::from_secs(20), || finished(db) >= 10).await;
    outage.begin().await;
    actix_rt::time::sleep(length).await;
    let restored_at = outage.end().await;
    wait_for("every job to finish", Duration::from_secs(60), || finished(db) == FLEET_JOBS).await;
    // Well past the threshold after the restore: every watchdog had its chance to reap.
    let settle = (alive_threshold * 2).saturating_sub(restored_at.elapsed());
    actix_rt::time::sleep(settle).await;
    let mut after = Vec::new();
    for handle in &handles {
        after.push(handle.process_id().await.expect("still registered"));
    }
    let executions = seen.lock().unwrap().clone();
    let mut runs: BTreeMap<i64, usize> = BTreeMap::new();
    for (n, _) in &executions {
        *runs.entry(*n).or_default() += 1;
    }
    let twice: Vec<i64> = runs.iter().filter(|(_, count)| **count > 1).map(|(n, _)| *n).collect();
    let reaped = log.count("dead process reaped");
    let resumed = log.count("heartbeat ages count from now");
    eprintln!(
        "[{name}] {FLEET} processes through a {length:?} outage (threshold {alive_threshold:?}): identities before {identities:?}, after {after:?}; reaped {reaped}; watches resumed {resumed}; jobs run twice {twice:?}"
    );
    for handle in &handles {
        assert!(handle.shutdown().await.deregistered);
    }
    assert_eq!(reaped, 0, "[{name}] a live process was reaped after the outage");
    assert_eq!(identities, after, "[{name}] no live process had to register again");
    assert!(twice.is_empty(), "[{name}] jobs {twice:?} ran twice");
    assert_eq!(runs.len() as i64, FLEET_JOBS, "[{name}] every job ran");
    let states: HashSet<String> = ids.iter().map(|id| db.state(*id)).collect();
    assert_eq!(states, HashSet::from(["finished".to_string()]));
}

#[test]
fn postgres_outage_longer_than_the_threshold_reaps_no_live_process() {
    let _serial = serial();
    let Some(db) = TestDb::postgres() else { return };
    let direct = db.postgres_url().unwrap().to_string();
    let proxy = Proxy::start(server_of(&direct));
    let url = via(&direct, proxy.addr);
    System::new().block_on(live_processes_outlast_an_outage(
        "postgres fleet",
        &db,
        DatabaseUrl::Postgres(url),
        Duration::from_secs(3),
        Duration::from_secs(8),
        ProxyOutage(proxy),
    ));
}

#[test]
fn mysql_outage_longer_than_the_threshold_reaps_no_live_process() {
    let _serial = serial();
    let Some(db) = TestDb::mysql() else { return };
    let direct = db.mysql_url().unwrap().to_string();
    let proxy = Proxy::start(server_of(&direct));
    let url = via(&direct, proxy.addr);
    System::new().block_on(live_processes_outlast_an_outage(
        "mysql fleet",
        &db,
        DatabaseUrl::Mysql(url),
        Duration::from_secs(3),
        Duration::from_secs(8),
        ProxyOutage(proxy),
    ));
}

#[test]
fn sqlite_lock_longer_than_the_threshold_reaps_no_live_process() {
    let _serial = serial();
    let db = TestDb::sqlite();
    let DatabaseUrl::Sqlite(path) = db.url.clone() else { unreachable!() };
    System::new().block_on(live_processes_outlast_an_outage(
        "sqlite fleet",
        &db,
        db.url.clone(),
        Duration::from_secs(3),
        SQLITE_BUSY_TIMEOUT + Duration::from_secs(2),
        LockOutage { path, locker: None },
    ));
}

/// The connection drops after a claim committed on the server but before its reply came
/// back: the claim is committed, the worker saw an error. The job must still run.
async fn claim_commit_reply_lost(db: &TestDb, proxy: Proxy, url: String) {
    let panics_before = panics().load(Ordering::SeqCst);
    let log = LogRecorder::new();
    let seen: Executions = Arc::default();
    let handler_seen = seen.clone();
    let runtime = Runtime::new(config(DatabaseUrl::Postgres(url), Duration::from_secs(10)), log.logger())
        .expect("building the runtime")
        .register::<Step, _, _>(move || Stepper { seen: handler_seen.clone() });
    let jobs = 30;
    let ids =
        runtime.queue().enqueue_all((1..=jobs).map(|n| Step { n, panic: false, sleep_ms: JOB_MS })).await.unwrap();
    let handle = runtime.start().expect("starting the runtime");
    wait_for("5 jobs to finish", Duration::from_secs(20), || finished(db) >= 5).await;
    let process = handle.process_id().await.expect("registered");

    proxy.arm_claim_commit_trap();
    wait_for("a claim's reply to be dropped", Duration::from_secs(10), || proxy.trap_sprung()).await;
    // Let the server commit, then the connection drops with the reply unsent.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    let executed: HashSet<i64> = seen.lock().unwrap().iter().map(|(n, _)| *n).collect();
    let in_doubt: Vec<i64> = db
        .store
        .claims_of(process)
        .unwrap()
        .iter()
        .filter_map(|token| ids.iter().position(|id| *id == token.job_id).map(|i| i as i64 + 1))
        .filter(|n| !executed.contains(n))
        .collect();
    eprintln!("[claim reply lost] committed claims the runtime never heard of: jobs {in_doubt:?}");
    assert!(!in_doubt.is_empty(), "the trap should leave a committed, unacknowledged claim");
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    let restored_at = Instant::now();

    let deadline = restored_at + Duration::from_secs(20);
    while finished(db) < jobs && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let counts = db.store.counts().unwrap().0;
    let stuck: Vec<String> = ids
        .iter()
        .filter_map(|id| db.store.job(*id).unwrap())
        .filter(|job| job.state != Some(solidq::model::JobState::Finished))
        .map(|job| format!("job {} {:?} attempts={}", job.id, job.state, job.attempts))
        .collect();
    let report = handle.shutdown().await;
    eprintln!("[claim reply lost] after restore: {counts:?}, unfinished {stuck:?}, shutdown {report:?}");
    assert!(
        stuck.is_empty(),
        "jobs {in_doubt:?} were claimed by a commit whose reply was lost; 20 s after the database returned \
         they are still unfinished ({stuck:?}) although process {process} is alive and registered: the worker \
         treated the claim as failed and nobody reconciles it (shutdown then released {} claim(s))",
        report.released
    );
    assert_eq!(panics().load(Ordering::SeqCst), panics_before, "something panicked");
    assert!(report.deregistered);
}

#[test]
fn postgres_claim_whose_commit_reply_is_lost_still_runs() {
    let _serial = serial();
    let Some(db) = TestDb::postgres() else { return };
    let direct = db.postgres_url().unwrap().to_string();
    let proxy = Proxy::start(server_of(&direct));
    // Plain text, so that the proxy can see the claim's reply.
    let url = format!("{}&sslmode=disable", via(&direct, proxy.addr));
    System::new().block_on(claim_commit_reply_lost(&db, proxy, url));
}
