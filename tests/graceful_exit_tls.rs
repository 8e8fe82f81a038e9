//! Graceful exits over TLS: a worker process that drains on TERM must exit with status 0, never
//! die of a signal while its threads are still inside libpq/OpenSSL as `exit()` runs OpenSSL's
//! atexit cleanup (a SIGSEGV in libcrypto after `run()` returned, seen once in production).
//!
//! Starts many short-lived worker processes over `sslmode=require`, several at a time, with
//! short intervals so that database calls are in flight on every thread at TERM.
//! The worker processes are this test binary re-run with `--exact exit_child --ignored` and
//! `SOLIDQ_TEST_CHILD=1`. `SOLIDQ_TEST_EXIT_ROUNDS` changes the number of rounds (each runs
//! `PARALLEL` processes); a crashed process leaves its core (if enabled) in a kept directory.
//! Before the fix about 1 exit in 400 crashed; what made it possible fails every time: each
//! child checks that no arbiter or blocking-pool thread of the runtime is left when `run()`
//! returns, and exits with status 3 if one is. A soak (`SOLIDQ_TEST_EXIT_ROUNDS=300`, with
//! `ulimit -c unlimited`) exercises the crash itself.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::fixtures::{Blocking, BlockingWorker};
use common::wait_exit;
use diesel::{Connection, PgConnection};
use solidq::config::DatabaseUrl;
use solidq::Runtime;

/// Entry point of the worker processes; does nothing unless `SOLIDQ_TEST_CHILD=1`.
#[test]
#[ignore]
fn exit_child() {
    if std::env::var("SOLIDQ_TEST_CHILD").as_deref() != Ok("1") {
        return;
    }
    let runtime = Runtime::from_env().expect("child runtime").register_sync::<Blocking, _, _>(2, || BlockingWorker);
    runtime.run().expect("child run");
    // `run()` has returned: none of the runtime's threads (arbiters and their blocking pools,
    // where database calls run) may still be at work, or `exit()` could run OpenSSL's cleanup
    // under them.
    let left = runtime_threads();
    if !left.is_empty() {
        eprintln!("threads still running after run() returned: {left:?}");
        std::process::exit(3);
    }
    // Exit right away, as a worker binary's `main` does after `run()` (the test harness would
    // add its own work before the process exits).
    std::process::exit(0);
}

/// Names of this process's threads that belong to actix arbiters or their tokio blocking pools
/// (`SyncArbiter` handler threads and r2d2's connection threads are not the runtime's to join).
fn runtime_threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| name.starts_with("actix-rt") || name.starts_with("tokio-runtime"))
        .collect()
}

const PARALLEL: usize = 4;
const DEFAULT_ROUNDS: usize = 10;

fn spawn_child(url: &str, dir: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "exit_child", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .current_dir(dir)
        .env("SOLIDQ_TEST_CHILD", "1")
        .env("SOLIDQ_DATABASE_URL", url)
        .env("SOLIDQ_WORKERS", "*:2;*:2;*:2")
        .env("SOLIDQ_POLLING_INTERVAL", "5ms")
        .env("SOLIDQ_DISPATCHER_POLLING_INTERVAL", "10ms")
        .env("SOLIDQ_HEARTBEAT_INTERVAL", "100ms")
        .env("SOLIDQ_ALIVE_THRESHOLD", "10s")
        .env("SOLIDQ_WATCHDOG_INTERVAL", "10ms")
        .env("SOLIDQ_SHUTDOWN_TIMEOUT", "5s")
        .env("SOLIDQ_AUTO_MIGRATE", "false")
        .env("SOLIDQ_LOG", "error")
        .env("SOLIDQ_POOL_SIZE", "6")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn child worker")
}

#[test]
fn many_graceful_exits_over_tls_all_exit_0() {
    use std::os::unix::process::ExitStatusExt;
    let Some(db) = common::TestDb::postgres() else { return };
    let DatabaseUrl::Postgres(url) = &db.url else { unreachable!() };
    let url = format!("{url}&sslmode=require");
    if let Err(err) = PgConnection::establish(&url) {
        eprintln!("SKIPPED: the PostgreSQL server does not accept TLS connections ({err})");
        return;
    }
    let rounds = std::env::var("SOLIDQ_TEST_EXIT_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(DEFAULT_ROUNDS);
    let dirs = tempfile::tempdir().unwrap();
    let (mut exits, mut failures) = (0, Vec::new());
    for round in 0..rounds {
        let naps = (0..20).map(|n| Blocking { n, panic: false, sleep_ms: 10 * (n % 5) as u64 });
        let jobs: Vec<_> = naps.map(|nap| solidq::NewJob::from_job(&nap, Default::default()).unwrap()).collect();
        db.store.enqueue(&jobs, Utc::now().naive_utc()).unwrap();
        let mut children: Vec<(Child, std::path::PathBuf)> = (0..PARALLEL)
            .map(|i| {
                let dir = dirs.path().join(format!("{round}-{i}"));
                std::fs::create_dir(&dir).unwrap();
                (spawn_child(&url, &dir), dir)
            })
            .collect();
        // TERM before the signal handlers are installed would kill a child outright: wait until
        // every child has registered, then let them work a little.
        let start = Instant::now();
        while db.store.processes().unwrap().len() < PARALLEL {
            assert!(start.elapsed() < Duration::from_secs(30), "children did not register");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100 + fastrand::u64(0..400)));
        for (child, _) in &children {
            // SAFETY: kill(2) on a child we spawned.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        for (child, dir) in children.iter_mut() {
            let status = wait_exit(child, Duration::from_secs(30));
            exits += 1;
            if !status.success() {
                eprintln!(
                    "round {round}: child {} exited with {status} (signal {:?}), dir {}",
                    child.id(),
                    status.signal(),
                    dir.display()
                );
                failures.push(status);
            }
        }
    }
    if !failures.is_empty() {
        // Keep the directories (cores) for inspection.
        eprintln!("kept {}", dirs.keep().display());
    }
    eprintln!("graceful exits over TLS: {} failed / {exits}", failures.len());
    assert!(failures.is_empty(), "{} of {exits} graceful exits failed: {failures:?}", failures.len());
    assert!(db.store.processes().unwrap().is_empty(), "every process deregistered");
}
