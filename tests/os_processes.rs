//! Real OS processes: TERM drains and exits 0, QUIT exits at once and leaves the claims to a
//! watchdog, and a worker killed with SIGKILL mid-job loses nothing: another process picks its
//! jobs up through fast death detection (session lock on PostgreSQL, pid on this host for SQLite).
//!
//! The worker processes are this test binary re-run with `--exact child_worker --ignored` and
//! `SOLIDQ_TEST_CHILD=1`. (The store's role for process rows is tested in
//! `tests/conformance/processes.rs`.)

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use common::TestDb;
use common::{backend_test, send, wait_exit, wait_until};
use serde::{Deserialize, Serialize};
use solidq::maintenance::watchdog::{Watchdog, WatchdogConfig};
use solidq::maintenance::{Pass, Service};
use solidq::{Job, JobError, Perform, Runtime};

#[derive(Serialize, Deserialize)]
struct Sleep {
    ms: u64,
    /// SIGKILL the worker running it (a poison job, as an OOM kill would look).
    #[serde(default)]
    kill_worker: bool,
}

impl Job for Sleep {
    const KIND: &'static str = "test.sleep";
    const MAX_ATTEMPTS: i32 = 10;
}

struct Sleeper;

impl Actor for Sleeper {
    type Context = SyncContext<Self>;
}

impl Handler<Perform<Sleep>> for Sleeper {
    type Result = Result<(), JobError>;
    fn handle(&mut self, msg: Perform<Sleep>, _: &mut SyncContext<Self>) -> Self::Result {
        if let Some(path) = std::env::var_os(EXEC_LOG_VAR) {
            // One short O_APPEND write per execution: lines from several processes never mix.
            let line = format!("{} {} {}\n", msg.meta.id, msg.meta.attempt, std::process::id());
            let mut log = std::fs::OpenOptions::new().append(true).create(true).open(path).expect("execution log");
            std::io::Write::write_all(&mut log, line.as_bytes()).expect("execution log write");
        }
        if msg.job.kill_worker {
            // SAFETY: signalling our own process.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        span_event('S', msg.meta.id);
        std::thread::sleep(Duration::from_millis(msg.job.ms));
        span_event('E', msg.meta.id);
        Ok(())
    }
}

/// Appends `event job_id pid unix_nanos` to the span log, if one is set.
fn span_event(event: char, job: i64) {
    if let Some(path) = std::env::var_os(SPAN_LOG_VAR) {
        let line = format!("{event} {job} {} {}\n", std::process::id(), unix_nanos());
        let mut log = std::fs::OpenOptions::new().append(true).create(true).open(path).expect("span log");
        std::io::Write::write_all(&mut log, line.as_bytes()).expect("span log write");
    }
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

/// A file the child workers append `S|E job_id pid unix_nanos` to when an execution's sleep
/// starts and ends.
const SPAN_LOG_VAR: &str = "SOLIDQ_TEST_SPAN_LOG";

/// A file the child workers append `job_id attempt pid` to when an execution starts.
const EXEC_LOG_VAR: &str = "SOLIDQ_TEST_EXEC_LOG";
/// The child's `Runtime::stuck_after`, in milliseconds.
const STUCK_AFTER_VAR: &str = "SOLIDQ_TEST_STUCK_AFTER_MS";

/// Entry point of the worker processes the tests below start; does nothing unless
/// `SOLIDQ_TEST_CHILD=1` (it is `#[ignore]`d so a normal run never starts it).
#[test]
#[ignore]
fn child_worker() {
    if std::env::var("SOLIDQ_TEST_CHILD").as_deref() != Ok("1") {
        return;
    }
    let mut runtime = Runtime::from_env().expect("child runtime").register_sync::<Sleep, _, _>(4, || Sleeper);
    if let Some(ms) = std::env::var(STUCK_AFTER_VAR).ok().and_then(|ms| ms.parse().ok()) {
        runtime = runtime.stuck_after(Duration::from_millis(ms));
    }
    runtime.run().expect("child run");
}

/// Executions started per job id, from the execution log, each as (attempt, pid).
fn executions(log: &std::path::Path) -> std::collections::BTreeMap<i64, Vec<(i32, u32)>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut runs = std::collections::BTreeMap::<i64, Vec<(i32, u32)>>::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [id, attempt, pid] = fields[..] else { panic!("bad execution log line {line:?}") };
        runs.entry(id.parse().unwrap()).or_default().push((attempt.parse().unwrap(), pid.parse().unwrap()));
    }
    runs
}

fn spawn_child(db: &TestDb, extra: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_worker", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("SOLIDQ_TEST_CHILD", "1")
        .env("SOLIDQ_DATABASE_URL", db.url_text())
        .env("SOLIDQ_WORKERS", "*:4")
        .env("SOLIDQ_POLLING_INTERVAL", "20ms")
        .env("SOLIDQ_HEARTBEAT_INTERVAL", "1s")
        // Long enough that only fast death detection can explain a quick recovery.
        .env("SOLIDQ_ALIVE_THRESHOLD", "60s")
        .env("SOLIDQ_WATCHDOG_INTERVAL", "100ms")
        .env("SOLIDQ_SHUTDOWN_TIMEOUT", "10s")
        .env("SOLIDQ_LOG", "warn");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child worker")
}

/// SIGTERMs every child at once (so they drain side by side), then waits for each to exit.
fn terminate(children: &mut [Child]) -> Vec<std::process::ExitStatus> {
    for child in children.iter() {
        send(child, libc::SIGTERM);
    }
    children.iter_mut().map(|child| wait_exit(child, Duration::from_secs(20))).collect()
}

fn enqueue_sleeps(db: &TestDb, n: usize, ms: u64) -> Vec<i64> {
    let jobs: Vec<_> = (0..n)
        .map(|_| solidq::NewJob::from_job(&Sleep { ms, kill_worker: false }, Default::default()).unwrap())
        .collect();
    db.store.enqueue(&jobs, Utc::now().naive_utc()).unwrap()
}

fn states(db: &TestDb, ids: &[i64]) -> Vec<String> {
    ids.iter().map(|id| db.state(*id)).collect()
}

backend_test!(
    fn term_drains_running_jobs_and_exits_0(db: TestDb) {
        let ids = enqueue_sleeps(&db, 3, 1_500);
        let mut child = spawn_child(&db, &[]);
        wait_until("all three claimed", Duration::from_secs(30), || states(&db, &ids).iter().all(|s| s == "claimed"));
        send(&child, libc::SIGTERM);
        let status = wait_exit(&mut child, Duration::from_secs(20));
        assert!(status.success(), "exit status {status}");
        assert!(states(&db, &ids).iter().all(|s| s == "finished"), "{:?}", states(&db, &ids));
        assert!(db.store.processes().unwrap().is_empty(), "deregistered");
    }
);

backend_test!(
    fn quit_exits_at_once_and_leaves_claims_to_the_watchdog(db: TestDb) {
        let ids = enqueue_sleeps(&db, 2, 20_000);
        let mut child = spawn_child(&db, &[]);
        wait_until("both claimed", Duration::from_secs(30), || states(&db, &ids).iter().all(|s| s == "claimed"));
        let sent = Instant::now();
        send(&child, libc::SIGQUIT);
        wait_exit(&mut child, Duration::from_secs(5));
        assert!(sent.elapsed() < Duration::from_secs(5), "QUIT does not wait for the 20 s jobs");
        assert!(states(&db, &ids).iter().all(|s| s == "claimed"), "claims left in place");
        assert_eq!(db.store.processes().unwrap().len(), 1, "row left in place");
        // A watchdog on this host sees the pid is gone (and on PostgreSQL, the session too).
        let config = WatchdogConfig {
            alive_threshold: Duration::from_secs(60),
            session_confirmation: Duration::ZERO,
            ..WatchdogConfig::default()
        };
        let outcome = Watchdog::new(config).run_once(&db.store, Pass::now(None)).unwrap();
        assert_eq!(outcome.reaped.len(), 1);
        assert_eq!(outcome.reaped[0].retried, 2);
        assert!(states(&db, &ids).iter().all(|s| s == "ready"));
    }
);

backend_test!(
    fn sigkill_mid_job_loses_nothing(db: TestDb) {
        let ids = enqueue_sleeps(&db, 40, 150);
        // Where processes hold a session lock (PostgreSQL, MySQL) the pid probe is off, so the
        // session lock alone must detect the death.
        let probe: &[(&str, &str)] =
            if db.store.backend() != "sqlite" { &[("SOLIDQ_PID_PROBE", "false")] } else { &[] };
        let mut victim = spawn_child(&db, probe);
        let mut survivor = spawn_child(&db, probe);
        let victim_pid = victim.id() as i32;
        let victim_process = || db.store.processes().unwrap().into_iter().find(|p| p.pid == victim_pid).map(|p| p.id);
        wait_until("the victim to hold claims", Duration::from_secs(30), || {
            victim_process().is_some_and(|p| !db.store.claims_of(p).unwrap().is_empty())
        });
        let process = victim_process().unwrap();
        let killed_at = Instant::now();
        send(&victim, libc::SIGKILL);
        wait_exit(&mut victim, Duration::from_secs(5));
        // The alive threshold is 60 s: only session or pid detection can free these claims in time.
        wait_until("the victim's claims to be handed back", Duration::from_secs(20), || {
            db.store.claims_of(process).unwrap().is_empty()
        });
        eprintln!("claims of the SIGKILLed worker handed back after {} ms", killed_at.elapsed().as_millis());
        wait_until("every job to finish", Duration::from_secs(60), || {
            states(&db, &ids).iter().all(|s| s == "finished")
        });
        send(&survivor, libc::SIGTERM);
        assert!(wait_exit(&mut survivor, Duration::from_secs(20)).success());
    }
);

backend_test!(
    fn poison_job_that_kills_its_worker_ends_in_failed(db: TestDb) {
        let poison = solidq::NewJob::from_job(
            &Sleep { ms: 0, kill_worker: true },
            solidq::EnqueueOptions::new().max_attempts(2),
        )
        .unwrap();
        let id = db.store.enqueue(&[poison], Utc::now().naive_utc()).unwrap()[0];
        let healthy = enqueue_sleeps(&db, 5, 10);
        // Two workers at a time; every one the poison job kills is replaced.
        let mut workers = vec![spawn_child(&db, &[]), spawn_child(&db, &[])];
        let started = Instant::now();
        let mut killed = 0;
        while db.state(id) != "failed" {
            assert!(started.elapsed() < Duration::from_secs(60), "poison job never failed");
            for w in workers.iter_mut() {
                if w.try_wait().unwrap().is_some() {
                    killed += 1;
                    *w = spawn_child(&db, &[]);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let job = db.store.job(id).unwrap().unwrap();
        assert_eq!(job.attempts, 2);
        let error = job.last_error.unwrap();
        assert_eq!(error.kind, solidq::model::FailureKind::ProcessDied);
        assert!(error.message.contains("last heartbeat"), "{}", error.message);
        assert!(killed >= 1);
        wait_until("the healthy jobs", Duration::from_secs(30), || {
            states(&db, &healthy).iter().all(|s| s == "finished")
        });
        for mut w in workers {
            send(&w, libc::SIGTERM);
            wait_exit(&mut w, Duration::from_secs(20));
        }
    }
);

backend_test!(
    /// A whole process frozen (SIGSTOP, as a VM pause or a starved container) for longer than its
    /// stuck limit but shorter than the alive threshold is not dead and none of its children is
    /// stuck: no job it runs is handed to the idle process next to it, and every job runs exactly
    /// once, with attempts equal to the executions started.
    fn frozen_process_runs_every_job_exactly_once(db: TestDb) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("executions.log");
        let log_text = log.to_str().unwrap();
        // Stuck limits: 1 s for the worker, 3 s for the heartbeat; the freeze lasts 4 s.
        let knobs = [(EXEC_LOG_VAR, log_text), (STUCK_AFTER_VAR, "1000")];
        // Two jobs for four slots: the frozen worker keeps polling for more, so its loop has a claim
        // under way when it resumes, as a busy worker would.
        let ids = enqueue_sleeps(&db, 2, 6_000);
        let mut frozen = spawn_child(&db, &knobs);
        let frozen_pid = frozen.id() as i32;
        wait_until("both jobs claimed by the first process", Duration::from_secs(30), || {
            states(&db, &ids).iter().all(|s| s == "claimed")
        });
        let mut idle = spawn_child(&db, &knobs);
        wait_until("the idle process to register", Duration::from_secs(30), || {
            db.store.processes().unwrap().len() == 2
        });
        send(&frozen, libc::SIGSTOP);
        std::thread::sleep(Duration::from_secs(4));
        send(&frozen, libc::SIGCONT);
        wait_until("every job to finish", Duration::from_secs(60), || {
            states(&db, &ids).iter().all(|s| s == "finished")
        });
        let runs = executions(&log);
        for id in &ids {
            let runs = &runs[id];
            assert_eq!(runs.len(), 1, "job {id} ran more than once: {runs:?}");
            assert_eq!(runs[0], (1, frozen_pid as u32), "job {id} ran on the frozen process as attempt 1");
            assert_eq!(db.store.job(*id).unwrap().unwrap().attempts, 1, "attempts equal executions started");
        }
        assert!(
            db.store.processes().unwrap().iter().any(|p| p.pid == frozen_pid),
            "the frozen process was never reaped or re-registered"
        );
        for child in [&frozen, &idle] {
            send(child, libc::SIGTERM);
        }
        assert!(wait_exit(&mut frozen, Duration::from_secs(20)).success());
        assert!(wait_exit(&mut idle, Duration::from_secs(20)).success());
    }
);

backend_test!(
    /// A graceful TERM that cuts a long job short (shutdown timeout) returns it to ready without
    /// using an attempt; the next run is attempt 1 and the only one counted.
    fn term_during_a_long_job_costs_no_attempt(db: TestDb) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("executions.log");
        let knobs = [(EXEC_LOG_VAR, log.to_str().unwrap()), ("SOLIDQ_SHUTDOWN_TIMEOUT", "200ms")];
        let ids = enqueue_sleeps(&db, 1, 3_000);
        for round in 1..=2 {
            let mut child = spawn_child(&db, &knobs);
            wait_until("the job to be claimed", Duration::from_secs(30), || states(&db, &ids) == ["claimed"]);
            send(&child, libc::SIGTERM);
            assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
            let job = db.store.job(ids[0]).unwrap().unwrap();
            assert_eq!((db.state(ids[0]), job.attempts), ("ready".to_string(), 0), "after TERM number {round}");
        }
        let mut child = spawn_child(&db, &[(EXEC_LOG_VAR, log.to_str().unwrap())]);
        wait_until("the job to finish", Duration::from_secs(30), || states(&db, &ids) == ["finished"]);
        assert_eq!(db.store.job(ids[0]).unwrap().unwrap().attempts, 1);
        let attempts: Vec<i32> = executions(&log)[&ids[0]].iter().map(|(attempt, _)| *attempt).collect();
        assert_eq!(attempts, [1, 1, 1], "every run, cut short or not, was attempt 1");
        send(&child, libc::SIGTERM);
        assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
    }
);

backend_test!(
    /// Three scheduler processes on one database, with an `every 1s` task, one of them killed with
    /// SIGKILL part-way: every run time from the first run on is enqueued exactly once (no
    /// duplicates, no gaps), and each run's job exists once.
    fn three_schedulers_enqueue_each_run_once_through_a_sigkill(db: TestDb) {
        const KIND: &str = "test.recurring_tick";
        let dir = tempfile::tempdir().unwrap();
        let tasks = dir.path().join("recurring.toml");
        std::fs::write(&tasks, format!("[tick]\nkind = \"{KIND}\"\nschedule = \"every 1s\"\n")).unwrap();
        let knobs = [("SOLIDQ_RECURRING", tasks.to_str().unwrap())];
        let since = Utc::now().naive_utc() - chrono::Duration::minutes(1);
        let runs = || db.store.recurring_runs("tick", since).unwrap();
        let mut children: Vec<Child> = (0..3).map(|_| spawn_child(&db, &knobs)).collect();
        wait_until("the first run", Duration::from_secs(30), || !runs().is_empty());
        std::thread::sleep(Duration::from_millis(2_500));
        let mut victim = children.remove(0);
        send(&victim, libc::SIGKILL);
        wait_exit(&mut victim, Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(3_000));
        for status in terminate(&mut children) {
            assert!(status.success());
        }

        let runs = runs();
        let times: Vec<i64> = runs.iter().map(|run| run.run_at.and_utc().timestamp()).collect();
        let distinct_times: std::collections::BTreeSet<i64> = times.iter().copied().collect();
        let job_ids: std::collections::BTreeSet<i64> = runs.iter().filter_map(|run| run.job_id).collect();
        let jobs: i64 =
            db.store.waiting().unwrap().iter().filter(|w| w.kind == KIND).map(|w| w.ready + w.scheduled).sum();
        let duplicates = (times.len() - distinct_times.len()) + (jobs as usize).saturating_sub(distinct_times.len());
        let (first, last) = (times[0], times[times.len() - 1]);
        let gaps = (first..=last).filter(|second| !distinct_times.contains(second)).count();
        eprintln!(
            "three schedulers on {}, one SIGKILLed: runs {}, duplicates {duplicates}, gaps {gaps} ({} s window, {jobs} jobs)",
            db.backend(),
            runs.len(),
            last - first + 1
        );
        assert_eq!(job_ids.len(), runs.len(), "every run has its own job: {runs:?}");
        assert_eq!(jobs as usize, runs.len(), "one job per run");
        assert_eq!((duplicates, gaps), (0, 0), "run times {times:?}");
        assert!(runs.len() >= 5, "the task ran through the kill: {times:?}");
    }
);

backend_test!(
    /// Jobs sharing one concurrency key with a limit of 2, run by three worker processes of
    /// which one is SIGKILLed and replaced every 600 ms: at no instant do more than two of them
    /// run (an execution cut by a kill ends at the kill), and every job finishes.
    fn a_concurrency_limit_of_2_holds_while_workers_are_killed(db: TestDb) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("spans.log");
        let log_text = log.to_str().unwrap().to_string();
        let limit = solidq::ConcurrencyLimit::new("shared-account", 2);
        let jobs: Vec<_> = (0..80)
            .map(|_| {
                let opts = solidq::EnqueueOptions::new().concurrency(limit.clone());
                solidq::NewJob::from_job(&Sleep { ms: 60, kill_worker: false }, opts).unwrap()
            })
            .collect();
        let ids = db.store.enqueue(&jobs, Utc::now().naive_utc()).unwrap();
        let env = [(SPAN_LOG_VAR, log_text.as_str())];
        let mut children: Vec<Child> = (0..3).map(|_| spawn_child(&db, &env)).collect();
        let mut kills: Vec<(u32, u128)> = Vec::new();
        let started = Instant::now();
        while kills.len() < 4 && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(600));
            let mut victim = children.remove(0);
            send(&victim, libc::SIGKILL);
            kills.push((victim.id(), unix_nanos()));
            wait_exit(&mut victim, Duration::from_secs(5));
            children.push(spawn_child(&db, &env));
        }
        wait_until("every limited job to finish", Duration::from_secs(90), || {
            states(&db, &ids).iter().all(|s| s == "finished")
        });
        terminate(&mut children);
        // Spans from the log; a span its process never ended ends at that process's kill.
        let text = std::fs::read_to_string(&log).unwrap();
        let mut open: std::collections::HashMap<(i64, u32), u128> = Default::default();
        let mut events: Vec<(u128, i32)> = Vec::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let [event, job, pid, at] = fields[..] else { panic!("bad span line {line:?}") };
            let key = (job.parse::<i64>().unwrap(), pid.parse::<u32>().unwrap());
            let at: u128 = at.parse().unwrap();
            match event {
                "S" => {
                    open.insert(key, at);
                    events.push((at, 1));
                }
                _ => {
                    open.remove(&key);
                    events.push((at, -1));
                }
            }
        }
        let cut = open.len();
        for ((_, pid), _) in open {
            let killed_at = kills
                .iter()
                .find(|(victim, _)| *victim == pid)
                .map(|(_, at)| *at)
                .expect("only killed processes leave spans open");
            events.push((killed_at, -1));
        }
        // Ends before starts at the same instant.
        events.sort();
        let (mut running, mut most) = (0, 0);
        for (_, change) in &events {
            running += change;
            most = most.max(running);
        }
        eprintln!(
            "backend={} jobs={} executions={} kills={} cut_by_kills={cut} max_concurrent={most} limit=2",
            db.store.backend(),
            ids.len(),
            events.len() / 2,
            kills.len()
        );
        assert!(most <= 2, "{most} limited jobs ran at once");
        assert_eq!(most, 2, "the limit is also reached, not only respected");
    }
);

backend_test!(
    /// Two processes; the leader is killed with SIGKILL while it holds claims. The other is
    /// elected (the next term) and its watchdog hands the dead leader's claims back, with the
    /// alive threshold at 60 s: only the freed leader lock and fast death detection explain it.
    fn a_killed_leader_is_replaced_and_its_claims_come_back(db: TestDb) {
        let ids = enqueue_sleeps(&db, 40, 300);
        let mut first = spawn_child(&db, &[]);
        let mut second = spawn_child(&db, &[]);
        let leader = || {
            let leader = db.store.leader().unwrap()?;
            let row = db.store.processes().unwrap().into_iter().find(|p| p.id == leader.process)?;
            Some((leader, row))
        };
        wait_until("a leader holding claims", Duration::from_secs(30), || {
            leader().is_some_and(|(leader, _)| !db.store.claims_of(leader.process).unwrap().is_empty())
        });
        let (elected, row) = leader().unwrap();
        let (victim, survivor) =
            if row.pid == first.id() as i32 { (&mut first, &mut second) } else { (&mut second, &mut first) };
        assert_eq!(row.pid, victim.id() as i32);
        let killed_at = Instant::now();
        send(victim, libc::SIGKILL);
        wait_exit(victim, Duration::from_secs(5));
        wait_until("another process elected", Duration::from_secs(20), || {
            db.store.leader().unwrap().is_some_and(|now| now.term > elected.term && now.process != elected.process)
        });
        let elected_after = killed_at.elapsed();
        wait_until("the dead leader's claims handed back", Duration::from_secs(20), || {
            db.store.claims_of(elected.process).unwrap().is_empty()
        });
        eprintln!(
            "new leader after {} ms, the killed leader's claims back after {} ms",
            elected_after.as_millis(),
            killed_at.elapsed().as_millis()
        );
        assert!(!db.store.processes().unwrap().iter().any(|p| p.id == elected.process), "the dead leader reaped");
        wait_until("every job to finish", Duration::from_secs(60), || {
            states(&db, &ids).iter().all(|s| s == "finished")
        });
        send(survivor, libc::SIGTERM);
        assert!(wait_exit(survivor, Duration::from_secs(20)).success());
    }
);

backend_test!(
    /// A batch whose last job runs in a process killed with SIGKILL: the job comes back (fast
    /// death detection), runs again in the other process, and the batch's callbacks are enqueued
    /// once, then run once.
    fn a_batch_whose_last_job_s_process_is_killed_runs_its_callback_once(db: TestDb) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("executions.log");
        let knobs = [(EXEC_LOG_VAR, log.to_str().unwrap())];
        let members: Vec<solidq::NewJob> = [50, 50, 3_000]
            .iter()
            .map(|&ms| solidq::NewJob::from_job(&Sleep { ms, kill_worker: false }, Default::default()).unwrap())
            .collect();
        let batch = solidq::store::composition::NewBatch {
            on_finish: Some(
                solidq::NewJob::from_job(&Sleep { ms: 1, kill_worker: false }, Default::default()).unwrap(),
            ),
            on_success: Some(
                solidq::NewJob::from_job(&Sleep { ms: 2, kill_worker: false }, Default::default()).unwrap(),
            ),
            ..Default::default()
        };
        let (batch_id, enqueued) = db.store.enqueue_batch(&batch, &members, Utc::now().naive_utc()).unwrap();
        let long = enqueued[2].id();
        let mut victim = spawn_child(&db, &knobs);
        wait_until("the long job to be claimed", Duration::from_secs(30), || db.state(long) == "claimed");
        let mut survivor = spawn_child(&db, &knobs);
        wait_until("the short jobs to finish", Duration::from_secs(30), || {
            enqueued[..2].iter().all(|e| db.state(e.id()) == "finished")
        });
        assert!(db.store.batch(batch_id).unwrap().unwrap().finished_at.is_none(), "open while its last job runs");
        send(&victim, libc::SIGKILL);
        wait_exit(&mut victim, Duration::from_secs(5));
        wait_until("the batch to end and its callbacks to run", Duration::from_secs(60), || {
            let info = db.store.batch(batch_id).unwrap().unwrap();
            info.is_finished() && info.callbacks.iter().all(|c| c.job.is_some_and(|id| db.state(id) == "finished"))
        });
        let info = db.store.batch(batch_id).unwrap().unwrap();
        assert_eq!((info.size, info.pending, info.succeeded, info.failed), (3, 0, 3, 0), "{info:?}");
        let runs = executions(&log);
        assert!(runs[&long].len() >= 2, "the long job ran again after the kill: {:?}", runs[&long]);
        for callback in &info.callbacks {
            let id = callback.job.unwrap();
            assert_eq!(runs[&id].len(), 1, "callback {id} ran once: {:?}", runs[&id]);
        }
        let counts = db.store.counts().unwrap().0;
        assert_eq!(counts.finished, 5, "three members and two callbacks, no more: {counts:?}");
        send(&survivor, libc::SIGTERM);
        assert!(wait_exit(&mut survivor, Duration::from_secs(20)).success());
    }
);

backend_test!(
    /// A rate limit of 50 starts per second, 560 jobs, three worker processes of which one is
    /// SIGKILLed after 4 s: no sliding second ever holds more than 50 handler starts, and most
    /// full seconds (counted from the first start) hold at least 45.
    fn a_rate_limit_of_50_per_second_holds_across_3_processes_and_a_kill(db: TestDb) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("spans.log");
        let log_text = log.to_str().unwrap().to_string();
        let limit = solidq::model::RateLimit::per_second("provider", 50);
        let jobs: Vec<_> = (0..560)
            .map(|_| {
                let opts = solidq::EnqueueOptions::new().rate_limit(limit.clone());
                solidq::NewJob::from_job(&Sleep { ms: 5, kill_worker: false }, opts).unwrap()
            })
            .collect();
        let ids = db.store.enqueue(&jobs, Utc::now().naive_utc()).unwrap();
        let env = [(SPAN_LOG_VAR, log_text.as_str())];
        let mut children: Vec<Child> = (0..3).map(|_| spawn_child(&db, &env)).collect();
        std::thread::sleep(Duration::from_secs(4));
        let mut victim = children.remove(0);
        send(&victim, libc::SIGKILL);
        wait_exit(&mut victim, Duration::from_secs(5));
        wait_until("every rate-limited job to finish", Duration::from_secs(60), || {
            states(&db, &ids).iter().all(|s| s == "finished")
        });
        terminate(&mut children);
        let text = std::fs::read_to_string(&log).unwrap();
        // (when, pid, job) of every start.
        let mut spans: Vec<(u128, String, String)> = text
            .lines()
            .filter(|line| line.starts_with('S'))
            .map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                (fields[3].parse().unwrap(), fields[2].to_string(), fields[1].to_string())
            })
            .collect();
        spans.sort_unstable();
        let starts: Vec<u128> = spans.iter().map(|span| span.0).collect();
        const SECOND: u128 = 1_000_000_000;
        // The most starts in any window [start, start + 1 s).
        let (mut most, mut end, mut worst) = (0, 0, 0);
        for (i, &at) in starts.iter().enumerate() {
            while end < starts.len() && starts[end] < at + SECOND {
                end += 1;
            }
            if end - i > most {
                (most, worst) = (end - i, i);
            }
        }
        if most > 50 {
            // The busiest second, start by start (ms from the first start, process, job), to
            // see where the extra starts came from.
            let from = worst.saturating_sub(5);
            for (at, pid, job) in &spans[from..(worst + most + 5).min(spans.len())] {
                eprintln!("  {:>8.1} ms  pid {pid}  job {job}", (at - starts[0]) as f64 / 1e6);
            }
        }
        let first = starts[0];
        let full = ((starts[starts.len() - 1] - first) / SECOND) as usize;
        let mut per_second = vec![0usize; full.max(1)];
        for &at in &starts {
            let second = ((at - first) / SECOND) as usize;
            if second < full {
                per_second[second] += 1;
            }
        }
        let good = per_second.iter().filter(|&&n| n >= 45).count();
        // How long after the earliest moment the window allowed each start came: the start 50
        // before it left the window (1 s + the 50 ms guard) after its own start.
        let mut lag_ms: Vec<i64> =
            (50..starts.len()).map(|i| ((starts[i] - starts[i - 50]) as i64 - 1_050_000_000) / 1_000_000).collect();
        lag_ms.sort_unstable();
        let lag = |q: usize| lag_ms.get(lag_ms.len() * q / 100).copied().unwrap_or_default();
        eprintln!(
            "backend={} jobs={} starts={} max_in_any_second={most} per_second={per_second:?} seconds_with_45_or_more={good}/{full} \
             lag_after_window_ms(p50,p90,max)=({},{},{})",
            db.store.backend(),
            ids.len(),
            starts.len(),
            lag(50),
            lag(90),
            lag_ms.last().copied().unwrap_or_default(),
        );
        assert!(most <= 50, "{most} starts in one second, over the limit of 50");
        assert!(starts.len() >= ids.len(), "every job started");
        assert!(good * 2 > full, "only {good} of {full} full seconds had at least 45 starts: {per_second:?}");
    }
);
