//! Metrics, health checks and alert events, on every backend: the counters move where the
//! facts happen, the text parses, the database gauges match a seeded state and are cached,
//! readiness follows the process row and the database, and each event is emitted once.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::fixtures::{fast_config, logger};
use common::{backend_test, wait_for, TestDb};
use serde::{Deserialize, Serialize};
use solidq::model::{NewProcess, ProcessMetadata, QueuePattern};
use solidq::store::{Observer, StoreEvent};
use solidq::{EnqueueOptions, Event, Exporter, Job, JobError, NewJob, Runtime, RuntimeError, Store};

/// A job that succeeds, or fails for good when `fail` is set.
#[derive(Serialize, Deserialize)]
struct Work {
    fail: bool,
}

impl Job for Work {
    const KIND: &'static str = "test.work";
    const QUEUE: &'static str = "telemetry";
}

fn work_runtime(db: &TestDb, config: solidq::Config) -> Runtime {
    Runtime::with_store(config, db.connect_again(), logger()).expect("runtime").register_async::<Work, _, _>(
        |job, _| async move {
            if job.fail {
                Err(JobError::permanent("boom \"quoted\"\nsecond line"))
            } else {
                Ok(())
            }
        },
    )
}

type Seen = Arc<Mutex<Vec<Event>>>;

fn recorder(seen: &Seen) -> impl Fn(&Event) + Send + Sync + 'static {
    let seen = seen.clone();
    move |event| seen.lock().unwrap().push(event.clone())
}

/// A parsed sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// A sample line: `name{labels} value`, its name, labels and value.
fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    let Some((name, labels)) = series.split_once('{') else {
        assert!(series.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad name in {line:?}");
        return (series.to_string(), Vec::new(), value);
    };
    let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
    let mut out = Vec::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
        // The value ends at the first quote not escaped by a backslash.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
        out.push((key.to_string(), after[..end].to_string()));
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    (name.to_string(), out, value)
}

/// Every line of `text` is a `# HELP`/`# TYPE` comment or a sample; returns the samples.
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "unexpected line {line:?}");
        samples.push(parse_sample(line));
    }
    samples
}

/// The value of the sample `name` with exactly `labels` (in any order), if present.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    parse(text).into_iter().find_map(|(n, l, v)| {
        let same = n == name
            && l.len() == labels.len()
            && labels.iter().all(|(k, val)| l.iter().any(|(lk, lv)| lk == k && lv == val));
        same.then_some(v)
    })
}

/// The cumulative buckets of histogram `name` with `labels` never decrease and end at its count.
fn assert_cumulative(text: &str, name: &str, labels: &[(&str, &str)]) {
    let bucket = format!("{name}_bucket");
    let counts: Vec<f64> = parse(text)
        .into_iter()
        .filter(|(n, l, _)| *n == bucket && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|(_, _, v)| v)
        .collect();
    assert!(counts.len() > 2, "no buckets of {name} in\n{text}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "buckets of {name} are not cumulative: {counts:?}");
    let count = value(text, &format!("{name}_count"), labels).expect("histogram count");
    assert_eq!(counts.last().copied(), Some(count), "the +Inf bucket is the count");
}

backend_test! {
    async fn counters_histograms_and_failed_events_follow_the_jobs(db: TestDb) {
        let seen: Seen = Arc::default();
        let runtime = work_runtime(&db, fast_config(&db, 4))
            .on_event(|_| panic!("a subscriber that panics on every event"))
            .on_event(recorder(&seen));
        let handle = runtime.start().expect("start");
        let queue = handle.queue();
        for fail in [false, false, false, true] {
            queue.enqueue(Work { fail }).await.expect("enqueue");
        }
        let metrics = handle.metrics();
        let finished = |text: &str, outcome: &str| {
            value(text, "solidq_jobs_executed_total", &[("queue", "telemetry"), ("kind", "test.work"), ("outcome", outcome)])
                .unwrap_or(0.0)
        };
        let exporter = Exporter::new(db.store.clone(), Duration::from_secs(3)).with_process(metrics.clone());
        wait_for("four outcomes counted", Duration::from_secs(10), || {
            let text = exporter.clone().cache_for(Duration::ZERO).scrape();
            finished(&text, "finished") == 3.0 && finished(&text, "failed") == 1.0
        })
        .await;
        // A panicking subscriber neither stops the worker nor the other subscriber.
        queue.enqueue(Work { fail: true }).await.expect("enqueue");
        wait_for("two failed events", Duration::from_secs(10), || {
            seen.lock().unwrap().iter().filter(|e| matches!(e, Event::JobFailed { .. })).count() == 2
        })
        .await;
        let text = handle.metrics_text();
        let labels = [("queue", "telemetry"), ("kind", "test.work")];
        assert_eq!(value(&text, "solidq_jobs_enqueued_total", &labels), Some(5.0), "{text}");
        assert_eq!(finished(&text, "failed"), 2.0);
        assert_eq!(finished(&text, "retried"), 0.0);
        assert_eq!(value(&text, "solidq_up", &[]), Some(1.0));
        assert_cumulative(&text, "solidq_job_duration_seconds", &labels);
        assert_cumulative(&text, "solidq_job_queue_wait_seconds", &labels);
        assert_eq!(value(&text, "solidq_job_duration_seconds_count", &labels), Some(5.0));
        assert!(value(&text, "solidq_process_heartbeat_age_seconds", &[]).is_some_and(|age| age < 2.0), "{text}");
        assert!(!text.contains("boom"), "no error message in a label or anywhere: {text}");
        let failed = seen.lock().unwrap().iter().find(|e| matches!(e, Event::JobFailed { .. })).cloned();
        match failed {
            Some(Event::JobFailed { kind, queue, error_kind, message, attempt, .. }) => {
                assert_eq!((kind.as_str(), queue.as_str(), error_kind.as_str()), ("test.work", "telemetry", "Error"));
                assert!(message.contains("boom"), "{message}");
                assert_eq!(attempt, 1);
            }
            other => panic!("expected a failed event, got {other:?}"),
        }
        handle.shutdown().await;
    }

    fn database_gauges_match_a_seeded_state(db: &TestDb) {
        let now = Utc::now().naive_utc();
        let job = |queue: &str| {
            NewJob::from_json("test.work", serde_json::json!({}), EnqueueOptions::new().queue(queue)).expect("job")
        };
        let mut later = job("mail");
        later.scheduled_at = Some(now + chrono::Duration::hours(1));
        let ready_since = now - chrono::Duration::seconds(90);
        db.store.enqueue(&[job("default"), job("default"), job("default"), later], ready_since).expect("enqueue");
        let process = |name: &str| NewProcess {
            kind: "Runtime".into(),
            name: name.into(),
            pid: 4242,
            hostname: "elsewhere".into(),
            metadata: ProcessMetadata::default(),
        };
        let alive = db.store.register_process(&process("alive"), now).expect("register");
        db.store.register_process(&process("late"), now - chrono::Duration::seconds(200)).expect("register");
        db.store.register_process(&process("dead"), now - chrono::Duration::seconds(400)).expect("register");
        let claimed = db
            .store
            .claim(alive, &[QueuePattern::All], &["test.work".to_string()], 2, now)
            .expect("claim");
        assert_eq!(claimed.len(), 2);
        let error = solidq::model::FailureRecord::new(solidq::model::FailureKind::Error, "x");
        db.store.fail_claims(&[claimed[0].token], &error, now).expect("fail");

        let exporter = Exporter::new(db.store.clone(), Duration::from_secs(300));
        let text = exporter.scrape();
        let jobs = |queue: &str, state: &str| value(&text, "solidq_queue_jobs", &[("queue", queue), ("state", state)]);
        assert_eq!(jobs("default", "ready"), Some(1.0), "{text}");
        assert_eq!(jobs("default", "claimed"), Some(1.0));
        assert_eq!(jobs("default", "failed"), Some(1.0));
        assert_eq!(jobs("default", "scheduled"), Some(0.0));
        assert_eq!(jobs("mail", "scheduled"), Some(1.0));
        assert_eq!(jobs("mail", "ready"), Some(0.0));
        let latency = value(&text, "solidq_queue_latency_seconds", &[("queue", "default")]).expect("latency");
        assert!((89.0..120.0).contains(&latency), "the oldest ready job waited about 90 s: {latency}");
        assert_eq!(value(&text, "solidq_queue_latency_seconds", &[("queue", "mail")]), Some(0.0));
        for (state, count) in [("alive", 1.0), ("late", 1.0), ("dead", 1.0)] {
            assert_eq!(value(&text, "solidq_processes", &[("state", state)]), Some(count), "{state}: {text}");
        }
        assert!(value(&text, "solidq_jobs_enqueued_total", &[]).is_none(), "no process series without with_process");
        parse(&text);
    }

    fn gauges_are_read_once_per_cache_period(db: &TestDb) {
        let reads = Arc::new(GaugeReads::default());
        let store = Store::connect(&db.url, 2).expect("connect").observed_by(reads.clone());
        let store = Arc::new(store);
        let cached = Exporter::new(store.clone(), Duration::from_secs(300));
        cached.scrape();
        cached.scrape();
        assert_eq!(reads.0.load(Ordering::SeqCst), 1, "the second scrape within cache_for reads nothing");
        let uncached = Exporter::new(store, Duration::from_secs(300)).cache_for(Duration::ZERO);
        uncached.scrape();
        uncached.scrape();
        assert_eq!(reads.0.load(Ordering::SeqCst), 3);
    }

    async fn readiness_follows_the_process_row_and_liveness_the_heartbeat(db: TestDb) {
        let seen: Seen = Arc::default();
        // Beats once a second: the row's deletion is noticed (and the process registers
        // again) up to a second later.
        let config = solidq::Config { heartbeat_interval: Duration::from_secs(1), ..fast_config(&db, 1) };
        let handle = work_runtime(&db, config).on_event(recorder(&seen)).start().expect("start");
        wait_for("registered", Duration::from_secs(10), || handle.metrics().process().is_some()).await;
        let ready = handle.health_ready().await;
        assert!(ready.ok, "{ready:?}");
        assert!(handle.health_live().ok, "{:?}", handle.health_live());
        let id = handle.process_id().await.expect("process id");
        db.execute_sql(&format!("DELETE FROM solidq_processes WHERE id = {id}"));
        let pruned = handle.health_ready().await;
        assert!(!pruned.ok && pruned.reason.contains("pruned"), "{pruned:?}");
        // The heartbeat finds its row gone, says so, and registers again: ready again.
        wait_for("the fenced event", Duration::from_secs(5), || {
            seen.lock().unwrap().iter().any(|e| matches!(e, Event::ProcessFenced { process: Some(p), .. } if *p == id))
        })
        .await;
        wait_for("ready again", Duration::from_secs(5), || handle.metrics().process().is_some_and(|p| p != id)).await;
        assert!(handle.health_ready().await.ok);
        handle.shutdown().await;
        let deregistered = handle.health_ready().await;
        assert!(!deregistered.ok, "{deregistered:?}");
        // After the shutdown the heartbeat stops ticking: dead after two intervals (and a second).
        wait_for("liveness to fail", Duration::from_secs(8), || !handle.health_live().ok).await;
    }

    async fn a_process_pruned_is_reported_once_by_two_runtimes(db: TestDb) {
        let seen: Seen = Arc::default();
        let first = work_runtime(&db, fast_config(&db, 1)).on_event(recorder(&seen)).start().expect("start");
        let second = work_runtime(&db, fast_config(&db, 1)).on_event(recorder(&seen)).start().expect("start");
        let now = Utc::now().naive_utc();
        let dead = db
            .store
            .register_process(
                &NewProcess {
                    kind: "Runtime".into(),
                    name: "gone".into(),
                    pid: 4242,
                    hostname: "elsewhere".into(),
                    metadata: ProcessMetadata::default(),
                },
                now,
            )
            .expect("register");
        let job = NewJob::from_json("test.other", serde_json::json!({}), EnqueueOptions::new()).expect("job");
        db.store.enqueue(&[job], now).expect("enqueue");
        let held = db.store.claim(dead, &[QueuePattern::All], &["test.other".to_string()], 1, now).expect("claim");
        assert_eq!(held.len(), 1);
        db.execute_sql(&format!(
            "UPDATE solidq_processes SET last_heartbeat_at = '2020-01-01 00:00:00' WHERE id = {dead}"
        ));
        let pruned = || {
            seen.lock().unwrap().iter().filter(|e| matches!(e, Event::ProcessPruned { .. })).cloned().collect::<Vec<_>>()
        };
        // Watchdogs judge heartbeat ages after watching for one alive threshold (3 s).
        wait_for("the dead process pruned", Duration::from_secs(15), || !pruned().is_empty()).await;
        actix_rt::time::sleep(Duration::from_millis(1500)).await;
        let events = pruned();
        assert_eq!(events.len(), 1, "one event for one pruned process: {events:?}");
        let Event::ProcessPruned { process, name, host, jobs, .. } = &events[0] else { unreachable!() };
        assert_eq!((*process, name.as_str(), host.as_str()), (dead, "gone", "elsewhere"));
        assert_eq!(jobs, &vec![held[0].token.job_id]);
        let pruned_total = [&first, &second]
            .iter()
            .map(|h| value(&h.metrics_text(), "solidq_processes_pruned_total", &[]).unwrap_or(0.0))
            .sum::<f64>();
        assert_eq!(pruned_total, 1.0);
        first.shutdown().await;
        second.shutdown().await;
    }

    async fn queue_latency_alerts_on_crossing_and_recovery(db: TestDb) {
        let seen: Seen = Arc::default();
        let config = solidq::Config { alert_queue_latency: Some(Duration::from_millis(300)), ..fast_config(&db, 1) };
        let handle = work_runtime(&db, config).on_event(recorder(&seen)).start().expect("start");
        // A kind nobody runs stays ready and ages.
        let job = NewJob::from_json("test.unserved", serde_json::json!({}), EnqueueOptions::new().queue("slow")).expect("job");
        handle.queue().enqueue_new(vec![job]).await.expect("enqueue");
        let count = |high: bool| {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|e| match e {
                    Event::QueueLatencyHigh { queue, .. } => high && queue == "slow",
                    Event::QueueLatencyRecovered { queue, .. } => !high && queue == "slow",
                    _ => false,
                })
                .count()
        };
        wait_for("latency high", Duration::from_secs(10), || count(true) == 1).await;
        assert_eq!(count(false), 0);
        db.execute_sql("DELETE FROM solidq_ready_executions");
        wait_for("latency recovered", Duration::from_secs(10), || count(false) == 1).await;
        actix_rt::time::sleep(Duration::from_millis(700)).await;
        assert_eq!((count(true), count(false)), (1, 1), "once per crossing");
        handle.shutdown().await;
    }

    async fn metrics_bind_serves_over_http(db: TestDb) {
        let config = solidq::Config { metrics_bind: Some("127.0.0.1:0".parse().unwrap()), ..fast_config(&db, 1) };
        let handle = work_runtime(&db, config).start().expect("start");
        let addr = handle.metrics_addr().expect("address");
        wait_for("registered", Duration::from_secs(10), || handle.metrics().process().is_some()).await;
        let (status, body) = actix_rt::task::spawn_blocking(move || {
            let metrics = get(addr, "/metrics");
            let live = get(addr, "/health/live");
            let ready = get(addr, "/health/ready");
            let missing = get(addr, "/nope");
            (vec![metrics.0, live.0, ready.0, missing.0], metrics.1)
        })
        .await
        .unwrap();
        assert_eq!(status, vec![200, 200, 200, 404]);
        assert!(body.contains("text/plain; version=0.0.4"), "{body}");
        assert!(body.contains("\nsolidq_up 1\n"), "{body}");

        // The port is taken now: a second runtime says which address it could not bind.
        let config = solidq::Config { metrics_bind: Some(addr), ..fast_config(&db, 1) };
        match work_runtime(&db, config).start() {
            Err(err @ RuntimeError::MetricsBind { .. }) => {
                assert!(err.to_string().contains(&addr.to_string()), "{err}")
            }
            Err(other) => panic!("expected MetricsBind, got {other}"),
            Ok(_) => panic!("a taken port must be refused"),
        }
        handle.shutdown().await;
    }
}

/// One GET: the status code and the whole response (headers and body).
fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    (status, response)
}

/// Counts the reads of the database gauges.
#[derive(Default)]
struct GaugeReads(AtomicUsize);

impl Observer for GaugeReads {
    fn finished(&self, event: &StoreEvent) {
        if event.operation == "reading metric gauges" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn readiness_fails_when_the_database_is_gone() {
    let db = TestDb::sqlite();
    let store = db.connect_again();
    assert!(solidq::health::database_ready(&store).ok);
    let solidq::DatabaseUrl::Sqlite(path) = &db.url else { unreachable!() };
    std::fs::remove_file(path).expect("remove the database file");
    let health = solidq::health::database_ready(&store);
    assert!(!health.ok && !health.reason.contains('\n'), "{health:?}");
    let text = Exporter::new(store, Duration::from_secs(300)).scrape();
    assert_eq!(value(&text, "solidq_up", &[]), Some(0.0), "{text}");
}

#[test]
fn readiness_fails_when_postgres_does_not_answer() {
    let Some(db) = TestDb::postgres() else { return };
    let proxy = common::outage::Proxy::start(common::outage::server_of(db.postgres_url().unwrap()));
    let url = solidq::DatabaseUrl::Postgres(common::outage::via(db.postgres_url().unwrap(), proxy.addr));
    readiness_fails_when_the_server_does_not_answer(proxy, url);
}

#[test]
fn readiness_fails_when_mysql_does_not_answer() {
    let Some(db) = TestDb::mysql() else { return };
    let proxy = common::outage::Proxy::start(common::outage::server_of(db.mysql_url().unwrap()));
    let url = solidq::DatabaseUrl::Mysql(common::outage::via(db.mysql_url().unwrap(), proxy.addr));
    readiness_fails_when_the_server_does_not_answer(proxy, url);
}

fn readiness_fails_when_the_server_does_not_answer(proxy: common::outage::Proxy, url: solidq::DatabaseUrl) {
    let store = solidq::store::connect(&url, 2).expect("connect through the proxy");
    assert!(solidq::health::database_ready(&store).ok);
    proxy.cut();
    let health = solidq::health::database_ready_within(&store, Duration::from_secs(1));
    assert!(!health.ok, "{health:?}");
}

#[test]
fn a_malformed_metrics_bind_names_the_variable() {
    let err = solidq::Config::from_lookup(|name| match name {
        "SOLIDQ_METRICS_BIND" => Some("not an address".into()),
        "SOLIDQ_ALERT_QUEUE_LATENCY" => Some("soon".into()),
        _ => None,
    })
    .expect_err("malformed");
    let text = err.to_string();
    assert!(text.contains("SOLIDQ_METRICS_BIND") && text.contains("127.0.0.1:9394"), "{text}");
    assert!(text.contains("SOLIDQ_ALERT_QUEUE_LATENCY"), "{text}");
    let ok = solidq::Config::from_lookup(|name| match name {
        "SOLIDQ_METRICS_BIND" => Some("127.0.0.1:9394".into()),
        "SOLIDQ_ALERT_QUEUE_LATENCY" => Some("30s".into()),
        _ => None,
    })
    .expect("valid");
    assert_eq!(ok.metrics_bind, Some("127.0.0.1:9394".parse().unwrap()));
    assert_eq!(ok.alert_queue_latency, Some(Duration::from_secs(30)));
}

#[test]
fn events_reach_an_actix_recipient() {
    use actix::prelude::*;
    struct Collector(Arc<Mutex<Vec<Event>>>);
    impl Actor for Collector {
        type Context = Context<Self>;
    }
    impl Handler<Event> for Collector {
        type Result = ();
        fn handle(&mut self, event: Event, _: &mut Context<Self>) {
            self.0.lock().unwrap().push(event);
        }
    }
    let db = TestDb::sqlite();
    let seen: Seen = Arc::default();
    let system = actix::System::new();
    system.block_on(async {
        let collector = Collector(seen.clone()).start();
        let handle = work_runtime(&db, fast_config(&db, 1)).subscribe(collector.recipient()).start().expect("start");
        handle.queue().enqueue(Work { fail: true }).await.expect("enqueue");
        wait_for("the failed event", Duration::from_secs(10), || !seen.lock().unwrap().is_empty()).await;
        handle.shutdown().await;
    });
    assert!(matches!(seen.lock().unwrap()[0], Event::JobFailed { .. }));
}

/// Seeds 1,000,000 finished jobs, 100,000 ready jobs over ten queues and 10,000 failed ones,
/// then times scrapes of the database gauges (no cache). Run with
/// `cargo test --release --test telemetry -- --ignored --nocapture`.
fn scrape_time_on_a_big_table(db: &TestDb) {
    let (series, now) = match db.backend() {
        "postgres" => ("generate_series(1, {n}) AS s(x)", "TIMESTAMP '2026-01-01 00:00:00'"),
        // Six digits cross-joined (no generate_series, and a recursive CTE of a million rows
        // passes MySQL's cte_max_recursion_depth).
        "mysql" => ("digits", "TIMESTAMP '2026-01-01 00:00:00'"),
        _ => ("c", "'2026-01-01 00:00:00'"),
    };
    let insert = |n: u64, queue: &str, finished: bool| {
        let from = series.replace("{n}", &n.to_string());
        let cte = match db.backend() {
            "postgres" => String::new(),
            "mysql" => format!(
                "WITH d(v) AS (SELECT 0 UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL \
                 SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL \
                 SELECT 9), digits(x) AS (SELECT a.v + 10 * b.v + 100 * c.v + 1000 * e.v + 10000 * f.v + \
                 100000 * g.v + 1 FROM d a, d b, d c, d e, d f, d g) "
            ),
            _ => format!("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) "),
        };
        let queue = match (queue, db.backend()) {
            ("spread", "mysql") => "CONCAT('q', x % 10)".to_string(),
            ("spread", _) => "'q' || (x % 10)".to_string(),
            _ => format!("'{queue}'"),
        };
        let finished = if finished { now } else { "NULL" };
        let limit = if db.backend() == "mysql" { format!(" WHERE x <= {n}") } else { String::new() };
        // MySQL takes the WITH after INSERT … (in the SELECT), the others before INSERT.
        let (before, after) = if db.backend() == "mysql" { (String::new(), cte) } else { (cte, String::new()) };
        db.execute_sql(&format!(
            "{before}INSERT INTO solidq_jobs (queue_name, class_name, arguments, priority, attempts, max_attempts, \
             finished_at, created_at, updated_at) {after}SELECT {queue}, 'big.job', '{{}}', 0, 1, 5, {finished}, \
             {now}, {now} FROM {from}{limit}"
        ));
    };
    insert(1_000_000, "default", true);
    insert(100_000, "spread", false);
    db.execute_sql(&format!(
        "INSERT INTO solidq_ready_executions (job_id, queue_name, priority, created_at, class_name) \
         SELECT id, queue_name, 0, {now}, class_name FROM solidq_jobs WHERE finished_at IS NULL"
    ));
    insert(10_000, "failing", false);
    db.execute_sql(&format!(
        "INSERT INTO solidq_failed_executions (job_id, created_at, error_kind, message) \
         SELECT id, {now}, 'Error', 'boom' FROM solidq_jobs WHERE queue_name = 'failing'"
    ));
    match db.backend() {
        "postgres" => db.execute_sql("ANALYZE"),
        "mysql" => db.execute_sql("ANALYZE TABLE solidq_jobs, solidq_ready_executions, solidq_failed_executions"),
        _ => {}
    }
    let exporter = Exporter::new(db.store.clone(), Duration::from_secs(300)).cache_for(Duration::ZERO);
    let text = exporter.scrape();
    assert_eq!(value(&text, "solidq_queue_jobs", &[("queue", "q3"), ("state", "ready")]), Some(10_000.0));
    assert_eq!(value(&text, "solidq_queue_jobs", &[("queue", "failing"), ("state", "failed")]), Some(10_000.0));
    let mut times: Vec<Duration> = (0..7)
        .map(|_| {
            let start = std::time::Instant::now();
            exporter.scrape();
            start.elapsed()
        })
        .collect();
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "{}: scrape of 1M finished + 100k ready + 10k failed jobs: median {median:?}, all {times:?}",
        db.backend()
    );
    assert!(median < Duration::from_millis(100), "median scrape {median:?}");
}

#[test]
#[ignore = "seeds a million rows; run with --ignored"]
fn scrape_time_on_a_big_table_sqlite() {
    scrape_time_on_a_big_table(&TestDb::sqlite());
}

#[test]
#[ignore = "seeds a million rows; run with --ignored"]
fn scrape_time_on_a_big_table_postgres() {
    if let Some(db) = TestDb::postgres() {
        scrape_time_on_a_big_table(&db);
    }
}

#[test]
#[ignore = "seeds a million rows; run with --ignored"]
fn scrape_time_on_a_big_table_mysql() {
    if let Some(db) = TestDb::mysql() {
        scrape_time_on_a_big_table(&db);
    }
}
