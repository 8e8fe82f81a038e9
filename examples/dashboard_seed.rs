//! Seeds a big database for the dashboard and times every page's reads on it.
//!
//! ```text
//! SOLIDQ_DATABASE_URL=sqlite://big.sqlite3 \
//!   cargo run --release --example dashboard_seed -- seed --ended 1000000 --ready 100000
//! SOLIDQ_DATABASE_URL=sqlite://big.sqlite3 cargo run --release --example dashboard_seed -- time
//! ```
//!
//! `seed` migrates the database and writes, in bulk (one multi-row `INSERT … SELECT` per table
//! over a generated series: `generate_series` on PostgreSQL, a recursive CTE on SQLite):
//! `--ended` ended jobs spread over the last 7 days up to now (5% discarded with an error, 1%
//! cancelled, the rest finished), `--ready` ready jobs, `--failed` (default 20,000) failed jobs
//! with three failed attempts each (some panics with backtraces, a handful of distinct
//! messages); then through the store's API: 2,000 scheduled jobs, 100 jobs holding unique
//! keys, 200 jobs over 10 concurrency keys of limit 2 (the rest blocked), a live and a dead
//! process holding 20 claims each, and three recurring tasks with an hour of runs (some
//! missing). Jobs use 5 queues and 8 kinds; arguments look like
//! `{"user":42,"note":"order 1234"}`.
//!
//! `time` runs each page's reads 9 times and prints the median milliseconds per read as a
//! markdown table.

use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};
use diesel::connection::SimpleConnection;
use solidq::model::{ConcurrencyLimit, NewProcess, OnConflict, ProcessMetadata, QueuePattern};
use solidq::recurring::RecurringTask;
use solidq::store::connection::app_pool;
use solidq::store::views::FailureGroupKey;
use solidq::store::{DueRun, JobQuery, JobSelection};
use solidq::{DatabaseUrl, JobState, NewJob, Store};

const QUEUES: [&str; 5] = ["default", "mail", "media", "reports", "webhooks"];
const KINDS: [&str; 8] = [
    "mail.send",
    "media.resize",
    "report.build",
    "webhook.deliver",
    "user.sync",
    "cache.warm",
    "billing.charge",
    "search.index",
];
const ALIVE: Duration = Duration::from_secs(60);

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: u64| -> Result<u64, Error> {
        match args.iter().position(|a| a == name) {
            Some(i) => {
                let value = args.get(i + 1).ok_or_else(|| format!("{name} needs a number"))?;
                Ok(value.parse().map_err(|_| format!("{name}: {value:?} is not a number"))?)
            }
            None => Ok(default),
        }
    };
    let text = std::env::var("SOLIDQ_DATABASE_URL").map_err(|_| "SOLIDQ_DATABASE_URL is not set")?;
    let url = DatabaseUrl::parse(&text).map_err(|err| format!("SOLIDQ_DATABASE_URL: {err}"))?;
    match args.first().map(String::as_str) {
        Some("seed") => seed(&url, flag("--ended", 1_000_000)?, flag("--ready", 100_000)?, flag("--failed", 20_000)?),
        Some("time") => time(&url, flag("--rounds", 9)? as usize),
        _ => Err("usage: dashboard_seed seed [--ended N] [--ready N] [--failed N] | time [--rounds N]".into()),
    }
}

/// `n` rows numbered `g` from 1: a recursive CTE on SQLite, `generate_series` on PostgreSQL.
fn series(postgres: bool, n: u64) -> (String, String) {
    if postgres {
        (String::new(), format!("FROM generate_series(1, {n}) AS s(g)"))
    } else {
        (format!("WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) "), "FROM s".into())
    }
}

/// `at` minus `seconds_expr` seconds, as a timestamp expression.
fn minus_seconds(postgres: bool, at: &str, seconds_expr: &str) -> String {
    if postgres {
        format!("(TIMESTAMP '{at}' - (({seconds_expr}) * INTERVAL '1 second'))")
    } else {
        format!("strftime('%Y-%m-%d %H:%M:%f', '{at}', '-' || ({seconds_expr}) || ' seconds')")
    }
}

fn case_of(expr: &str, names: &[&str]) -> String {
    let arms: String = names.iter().enumerate().map(|(i, name)| format!(" WHEN {i} THEN '{name}'")).collect();
    format!("(CASE ({expr}){arms} END)")
}

/// Inserts `n` job rows; `finished` and `end_state` are SQL expressions of `g`.
fn insert_jobs(
    postgres: bool,
    n: u64,
    attempts: u32,
    finished: &str,
    end_state: &str,
    last_error: &str,
    created: &str,
) -> String {
    let (with, from) = series(postgres, n);
    format!(
        "INSERT INTO solidq_jobs (queue_name, class_name, arguments, priority, attempts, max_attempts, finished_at, \
         end_state, last_error, created_at, updated_at) {with}SELECT {queue}, {kind}, \
         '{{\"user\":' || g || ',\"note\":\"order ' || (((g % 100000) * 7919) % 100000) || '\"}}', 0, {attempts}, 5, {finished}, \
         {end_state}, {last_error}, {created}, {created} {from}",
        queue = case_of("g % 5", &QUEUES),
        kind = case_of("g % 8", &KINDS),
    )
}

fn seed(url: &DatabaseUrl, ended: u64, ready: u64, failed: u64) -> Result<(), Error> {
    let postgres = matches!(url, DatabaseUrl::Postgres(_));
    let store = Store::connect(url, 4)?;
    store.migrate()?;
    let pool = app_pool(url, 1)?;
    let mut conn = pool.get()?;
    let now = Utc::now().naive_utc();
    let at = now.format("%Y-%m-%d %H:%M:%S").to_string();
    let started = Instant::now();
    let span = 7 * 24 * 3600;
    // Ended: newer for larger g, the newest now.
    let finished = minus_seconds(postgres, &at, &format!("({ended} - g) * {span}.0 / {ended}"));
    let created = minus_seconds(postgres, &at, &format!("({ended} - g) * {span}.0 / {ended} + 5"));
    let end_state = "(CASE WHEN g % 20 = 0 THEN 'discarded' WHEN g % 100 = 1 THEN 'cancelled' ELSE NULL END)";
    let last_error = "(CASE WHEN g % 20 = 0 THEN '{\"kind\":\"Error\",\"message\":\"bad input\"}' ELSE NULL END)";
    conn.batch_execute("BEGIN")?;
    conn.batch_execute(&insert_jobs(postgres, ended, 1, &finished, end_state, last_error, &created))?;
    conn.batch_execute("COMMIT")?;
    eprintln!("{ended} ended jobs in {:.1} s", started.elapsed().as_secs_f64());

    // Failed: three failed attempts each, the last one in the failed table.
    let started = Instant::now();
    let failed_since = minus_seconds(postgres, &at, "(g % 3600)");
    let before = max_id(&store)?;
    conn.batch_execute("BEGIN")?;
    conn.batch_execute(&insert_jobs(postgres, failed, 3, "NULL", "NULL", "NULL", &failed_since))?;
    let message = case_of(
        "id % 6",
        &[
            "SMTP connection refused",
            "timeout after 30s",
            "invalid image header",
            "HTTP 502 from upstream",
            "user 7 not found",
            "called `Option::unwrap()` on a `None` value",
        ],
    );
    let error_kind = "(CASE WHEN id % 6 = 5 THEN 'Panic' ELSE 'Error' END)";
    let backtrace = "(CASE WHEN id % 6 = 5 THEN 'src/jobs/sync.rs:' || (40 + id % 3) || ':17' ELSE NULL END)";
    conn.batch_execute(&format!(
        "INSERT INTO solidq_failed_executions (job_id, created_at, error_kind, message, backtrace) \
         SELECT id, updated_at, {error_kind}, {message}, {backtrace} FROM solidq_jobs WHERE id > {before}"
    ))?;
    conn.batch_execute(&format!(
        "INSERT INTO solidq_job_failures (job_id, attempt, error_kind, message, backtrace, created_at) \
         SELECT id, a.n, {error_kind}, {message}, {backtrace}, updated_at FROM solidq_jobs, \
         (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3) AS a WHERE id > {before}"
    ))?;
    conn.batch_execute("COMMIT")?;
    eprintln!("{failed} failed jobs in {:.1} s", started.elapsed().as_secs_f64());

    // Ready: created over the last hour.
    let started = Instant::now();
    let before = max_id(&store)?;
    let ready_since = minus_seconds(postgres, &at, &format!("({ready} - g) * 3600.0 / {ready}"));
    conn.batch_execute("BEGIN")?;
    conn.batch_execute(&insert_jobs(postgres, ready, 0, "NULL", "NULL", "NULL", &ready_since))?;
    conn.batch_execute(&format!(
        "INSERT INTO solidq_ready_executions (job_id, queue_name, priority, created_at, class_name) \
         SELECT id, queue_name, priority, created_at, class_name FROM solidq_jobs WHERE id > {before}"
    ))?;
    conn.batch_execute("COMMIT")?;
    eprintln!("{ready} ready jobs in {:.1} s", started.elapsed().as_secs_f64());
    if postgres {
        conn.batch_execute("ANALYZE")?;
    }
    drop(conn);

    // The rest through the store's API.
    let job = |i: usize| {
        NewJob::from_json(
            KINDS[i % KINDS.len()],
            serde_json::json!({ "user": i, "note": format!("api {i}") }),
            solidq::EnqueueOptions::new().queue(QUEUES[i % QUEUES.len()]),
        )
    };
    let mut jobs = Vec::new();
    for i in 0..2_000 {
        let mut scheduled = job(i)?;
        scheduled.scheduled_at = Some(now + chrono::Duration::seconds(60 + i as i64));
        jobs.push(scheduled);
    }
    for i in 0..100 {
        let mut unique = job(i)?;
        unique.unique_key = Some(format!("report:{i}"));
        unique.scheduled_at = Some(now + chrono::Duration::hours(1));
        jobs.push(unique);
    }
    for i in 0..200 {
        let mut limited = job(i)?;
        limited.queue = "limited".into();
        limited.concurrency = Some(ConcurrencyLimit {
            key: format!("account:{}", i % 10),
            limit: 2,
            duration: Duration::from_secs(900),
            on_conflict: OnConflict::Block,
        });
        jobs.push(limited);
    }
    store.enqueue(&jobs, now)?;
    let process = |name: &str| NewProcess {
        kind: "Runtime".into(),
        name: name.into(),
        pid: 4242,
        hostname: "seed-host".into(),
        metadata: ProcessMetadata::default(),
    };
    let live = store.register_process(&process("web-1"), now)?;
    let dead = store.register_process(&process("worker-gone"), now - chrono::Duration::minutes(10))?;
    let kinds: Vec<String> = KINDS.iter().map(|k| k.to_string()).collect();
    let all = [QueuePattern::parse("*")];
    store.claim(live, &all, &kinds, 20, now - chrono::Duration::seconds(30))?;
    store.claim(dead, &all, &kinds, 20, now - chrono::Duration::minutes(10))?;
    for (key, schedule) in [("hourly.report", "every 300s"), ("cache.refresh", "every 60s"), ("nightly", "0 3 * * *")] {
        let task = RecurringTask::new(key, schedule, "report.build")?;
        store.add_recurring_task(&task, now - chrono::Duration::hours(2))?;
    }
    // An hour of runs of cache.refresh, every fifth one missing.
    let runs: Vec<DueRun> = (1..=60)
        .filter(|i| i % 5 != 0)
        .map(|i| {
            let at = now - chrono::Duration::minutes(i);
            let at = at - chrono::Duration::seconds(i64::from(chrono::Timelike::second(&at)));
            Ok(DueRun { task_key: "cache.refresh".into(), run_at: at, job: job(i as usize)? })
        })
        .collect::<Result<_, Error>>()?;
    store.enqueue_recurring_runs(&runs, now)?;
    eprintln!("seeded: {:?}", store.state_counts()?);
    Ok(())
}

fn max_id(store: &Store) -> Result<i64, Error> {
    Ok(store.newest_job_id()?)
}

/// Median of `rounds` runs of `read`, in milliseconds.
fn median_ms(rounds: usize, mut read: impl FnMut() -> Result<(), Error>) -> Result<f64, Error> {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        read()?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn time(url: &DatabaseUrl, rounds: usize) -> Result<(), Error> {
    let store = Store::connect(url, 4)?;
    store.migrate()?;
    let now: NaiveDateTime = Utc::now().naive_utc();
    let backend = store.backend();
    let mut rows: Vec<(&str, &str, f64)> = Vec::new();
    let mut run =
        |page: &'static str, read: &'static str, f: &mut dyn FnMut() -> Result<(), Error>| -> Result<(), Error> {
            let ms = median_ms(rounds, f)?;
            rows.push((page, read, ms));
            Ok(())
        };
    run("/", "overview", &mut || {
        let _ = store.overview(now, ALIVE)?;
        Ok(())
    })?;
    run("/queues", "queue_stats", &mut || {
        let _ = store.queue_stats(now)?;
        Ok(())
    })?;
    run("/processes", "process_details", &mut || {
        let _ = store.process_details(now, ALIVE)?;
        Ok(())
    })?;
    for (read, state) in [
        ("page_jobs ready", JobState::Ready),
        ("page_jobs scheduled", JobState::Scheduled),
        ("page_jobs claimed", JobState::Claimed),
        ("page_jobs blocked", JobState::Blocked),
        ("page_jobs failed", JobState::Failed),
        ("page_jobs finished", JobState::Finished),
        ("page_jobs discarded", JobState::Discarded),
        ("page_jobs cancelled", JobState::Cancelled),
    ] {
        run("/jobs", read, &mut || {
            let _ = store.page_jobs(&JobQuery::new(state))?;
            Ok(())
        })?;
    }
    let deep = {
        // The 20th page of finished jobs: its cursor, found once.
        let mut query = JobQuery::new(JobState::Finished);
        for _ in 0..19 {
            let page = store.page_jobs(&query)?;
            query.after = page.next;
            query.upper_id = Some(page.upper_id);
        }
        query
    };
    run("/jobs", "page_jobs finished, page 20", &mut || {
        let _ = store.page_jobs(&deep)?;
        Ok(())
    })?;
    let mut by_queue = JobQuery::new(JobState::Finished);
    by_queue.queue = Some("mail".into());
    by_queue.kind = Some("mail.send".into());
    run("/jobs", "page_jobs finished, queue+kind", &mut || {
        let _ = store.page_jobs(&by_queue)?;
        Ok(())
    })?;
    let mut text = JobQuery::new(JobState::Finished);
    text.text = Some("order 4242\"".into());
    run("/jobs", "page_jobs finished, text (one window)", &mut || {
        let _ = store.page_jobs(&text)?;
        Ok(())
    })?;
    let mut ready_queue = JobQuery::new(JobState::Ready);
    ready_queue.queue = Some("media".into());
    run("/jobs", "page_jobs ready, queue", &mut || {
        let _ = store.page_jobs(&ready_queue)?;
        Ok(())
    })?;
    let failed_id = store.page_jobs(&JobQuery::new(JobState::Failed))?.rows.first().map_or(1, |row| row.id);
    run("/jobs/{id}", "job_detail (failed, 3 failures)", &mut || {
        let _ = store.job_detail(failed_id)?;
        Ok(())
    })?;
    run("/failed", "failure_groups", &mut || {
        let _ = store.failure_groups(50)?;
        Ok(())
    })?;
    let group = store
        .failure_groups(1)?
        .pop()
        .map_or(FailureGroupKey { kind: String::new(), error_kind: String::new(), message: String::new() }, |g| g.key);
    let mut failed_kind = JobQuery::new(JobState::Failed);
    failed_kind.kind = Some(group.kind.clone());
    let upper = store.newest_job_id()?;
    let selection = JobSelection::Query { query: failed_kind, upper_id: upper };
    run("/failed", "count_selection (failed of one kind)", &mut || {
        let _ = store.count_selection(&selection)?;
        Ok(())
    })?;
    run("/stuck", "stuck_jobs", &mut || {
        let _ = store.stuck_jobs(now, ALIVE, Duration::from_secs(300), 100)?;
        Ok(())
    })?;
    run("/concurrency", "concurrency_keys", &mut || {
        let _ = store.concurrency_keys(now)?;
        Ok(())
    })?;
    run("/concurrency", "unique_keys", &mut || {
        let _ = store.unique_keys(100)?;
        Ok(())
    })?;
    run("/recurring", "recurring_overview", &mut || {
        let _ = store.recurring_overview(now, 10)?;
        Ok(())
    })?;
    println!("| page | read | median ms ({backend}, {rounds} runs) |");
    println!("| --- | --- | ---: |");
    for (page, read, ms) in rows {
        println!("| `{page}` | {read} | {ms:.1} |");
    }
    Ok(())
}
