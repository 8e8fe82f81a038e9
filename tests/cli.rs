//! The `solidq` binary end to end: exit codes, messages and output, against a temporary SQLite
//! file and, when `SOLIDQ_TEST_POSTGRES_URL` is set, a private schema in that PostgreSQL
//! database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use serde_json::Value;

const POSTGRES_URL_VAR: &str = "SOLIDQ_TEST_POSTGRES_URL";

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().expect("the CLI exited normally"),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }
}

impl Run {
    fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// Runs `solidq args…` in `dir` with only the given `SOLIDQ_*` variables (any inherited from
/// the test's environment are removed) and quiet logging.
fn solidq(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_solidq"));
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SOLIDQ_") {
            command.env_remove(name);
        }
    }
    command.env("SOLIDQ_LOG", "error");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("running the solidq binary").into()
}

/// A private database: a SQLite file in a temporary directory or a PostgreSQL schema.
struct Db {
    url: String,
    /// Working directory for the binary (also holds the SQLite file).
    dir: tempfile::TempDir,
    _schema: Option<SchemaGuard>,
}

impl Db {
    fn run(&self, args: &[&str]) -> Run {
        self.run_with(&[], args)
    }

    fn run_with(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut all = vec![("SOLIDQ_DATABASE_URL", self.url.as_str())];
        all.extend_from_slice(env);
        solidq(self.dir.path(), &all, args)
    }
}

fn sqlite_db() -> (Db, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.sqlite3");
    let db = Db { url: format!("sqlite://{}", path.display()), dir, _schema: None };
    (db, path)
}

/// A fresh schema in the `SOLIDQ_TEST_POSTGRES_URL` database, or `None` (saying so) if unset.
fn postgres_db() -> Option<Db> {
    let Ok(base) = std::env::var(POSTGRES_URL_VAR) else {
        eprintln!("SKIPPED: {POSTGRES_URL_VAR} is not set, PostgreSQL CLI test skipped");
        return None;
    };
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let schema = format!(
        "solidq_cli_{}_{}_{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    );
    PgConnection::establish(&base)
        .unwrap_or_else(|err| panic!("connecting to {POSTGRES_URL_VAR}: {err}"))
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .expect("creating the test schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
    Some(Db { url, dir: tempfile::tempdir().unwrap(), _schema: Some(SchemaGuard { base, schema }) })
}

/// Drops the schema, with everything in it, when dropped.
struct SchemaGuard {
    base: String,
    schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.base) {
            let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

fn status_json(db: &Db) -> Value {
    let run = db.run(&["status", "--json"]);
    run.assert_ok();
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("status --json printed invalid JSON ({err}):\n{}", run.stdout))
}

fn enqueue(db: &Db, args: &[&str]) -> i64 {
    let mut all = vec!["enqueue"];
    all.extend_from_slice(args);
    let run = db.run(&all);
    run.assert_ok();
    run.stdout.trim().parse().unwrap_or_else(|_| panic!("enqueue printed no job id: {:?}", run.stdout))
}

fn queue<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["jobs"]["queues"]
        .as_array()
        .expect("jobs.queues is a list")
        .iter()
        .find(|q| q["queue"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {status}"))
}

/// migrate, enqueue, status: the whole round trip on one database.
fn migrate_enqueue_status(db: &Db) {
    let run = db.run(&["migrate"]);
    run.assert_ok();
    let applied: usize = run
        .stdout
        .strip_prefix("applied ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("migrate did not say how many ran: {:?}", run.stdout));
    assert!(applied >= 1, "{}", run.stdout);
    let run = db.run(&["migrate"]);
    run.assert_ok();
    assert!(run.stdout.starts_with("applied 0 migrations"), "{}", run.stdout);

    let first = enqueue(db, &["mailer.welcome", r#"{"user_id": 42}"#]);
    let status = status_json(db);
    assert_eq!(status["jobs"]["ready"], 1, "{status}");
    assert_eq!(status["jobs"]["scheduled"], 0, "{status}");
    assert_eq!(queue(&status, "default")["ready"], 1, "{status}");
    assert_eq!(status["processes"], serde_json::json!([]), "{status}");

    let second = enqueue(db, &["report.monthly", r#"{"month": "2026-11"}"#, "--queue", "reports", "--priority", "-5"]);
    let third = enqueue(db, &["reminder", "[1, 2]", "--in", "1h"]);
    assert!(first != second && second != third && first != third);

    let status = status_json(db);
    let jobs = &status["jobs"];
    assert_eq!(
        (&jobs["ready"], &jobs["scheduled"], &jobs["claimed"], &jobs["failed"], &jobs["finished"]),
        (&Value::from(2), &Value::from(1), &Value::from(0), &Value::from(0), &Value::from(0)),
        "{status}"
    );
    assert_eq!(queue(&status, "default")["ready"], 1, "{status}");
    assert_eq!(queue(&status, "default")["scheduled"], 1, "{status}");
    assert_eq!(queue(&status, "reports")["ready"], 1, "{status}");
    assert_eq!(queue(&status, "reports")["scheduled"], 0, "{status}");

    let run = db.run(&["status"]);
    run.assert_ok();
    assert!(run.stdout.contains("Processes: none registered"), "{}", run.stdout);
    assert!(run.stdout.contains("Jobs: 2 ready, 1 scheduled, 0 claimed, 0 failed, 0 finished"), "{}", run.stdout);
    assert!(run.stdout.contains("reports"), "{}", run.stdout);
}

#[test]
fn sqlite_migrate_enqueue_status() {
    let (db, _) = sqlite_db();
    migrate_enqueue_status(&db);
}

#[test]
fn postgres_migrate_enqueue_status() {
    if let Some(db) = postgres_db() {
        migrate_enqueue_status(&db);
    }
}

/// status and enqueue migrate a fresh database themselves unless told not to.
fn fresh_database_auto_migrates(db: &Db) {
    let run = db.run_with(&[("SOLIDQ_AUTO_MIGRATE", "false")], &["status"]);
    assert_eq!(
        run.code, 1,
        "status on an unmigrated database with auto-migrate off must fail: {}{}",
        run.stdout, run.stderr
    );
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);

    enqueue(db, &["ping", "{}"]);
    let status = status_json(db);
    assert_eq!(status["jobs"]["ready"], 1, "{status}");
}

#[test]
fn sqlite_fresh_database_auto_migrates() {
    let (db, _) = sqlite_db();
    fresh_database_auto_migrates(&db);
}

#[test]
fn postgres_fresh_database_auto_migrates() {
    if let Some(db) = postgres_db() {
        fresh_database_auto_migrates(&db);
    }
}

#[test]
fn invalid_json_payload_exits_2_without_touching_the_database() {
    let (db, path) = sqlite_db();
    let run = db.run(&["enqueue", "ping", "{\"n\": 1"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.starts_with("error: the payload is not valid JSON: "), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(!path.exists(), "the database was created for a rejected job");
}

#[test]
fn a_malformed_variable_exits_2_naming_it() {
    let (db, _) = sqlite_db();
    let run = db.run_with(&[("SOLIDQ_POOL_SIZE", "abc"), ("SOLIDQ_HEARTBEAT_INTERVAL", "ten")], &["status"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(r#"SOLIDQ_POOL_SIZE="abc""#), "{}", run.stderr);
    assert!(run.stderr.contains(r#"SOLIDQ_HEARTBEAT_INTERVAL="ten""#), "all problems are listed: {}", run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn an_unknown_url_scheme_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = solidq(dir.path(), &[("SOLIDQ_DATABASE_URL", "oracle://root:hunter2@localhost/jobs")], &["migrate"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("SOLIDQ_DATABASE_URL"), "{}", run.stderr);
    assert!(run.stderr.contains("\"oracle\""), "{}", run.stderr);
    assert!(run.stderr.contains("postgres://"), "{}", run.stderr);
    assert!(!run.stderr.contains("hunter2"), "password leaked: {}", run.stderr);
}

#[test]
fn an_unusable_database_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    // The database's directory cannot exist: a file is in the way.
    std::fs::write(dir.path().join("blocker"), b"not a directory").unwrap();
    let url = format!("sqlite://{}/blocker/x.sqlite3", dir.path().display());
    let run = solidq(dir.path(), &[("SOLIDQ_DATABASE_URL", &url)], &["status"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let run = solidq(dir.path(), &[], &["enqueue", "ping"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("<JSON>"), "{}", run.stderr);
    let run = solidq(dir.path(), &[], &["--help"]);
    assert_eq!(run.code, 0);
    for command in ["migrate", "status", "enqueue"] {
        assert!(run.stdout.contains(command), "{}", run.stdout);
    }
}

/// `solidq status` only reads: a SQLite path where nothing exists is no database, and the
/// command says so instead of creating directories and an empty database that shows 0 jobs.
#[test]
fn status_of_a_missing_sqlite_file_says_there_is_no_database_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not/yet/jobs.sqlite3");
    let url = format!("sqlite://{}", path.display());
    let run = solidq(dir.path(), &[("SOLIDQ_DATABASE_URL", &url)], &["status"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("there is no database at") && run.stderr.contains("not/yet/jobs.sqlite3"),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("not").exists(), "status created directories");
}

/// Payloads too large for a command line come from a file (`@path`) or standard input (`-`).
#[test]
fn enqueue_reads_the_payload_from_a_file_or_standard_input() {
    let (db, _) = sqlite_db();
    let big = serde_json::json!({ "blob": "x".repeat(300_000) }).to_string();
    let file = db.dir.path().join("payload.json");
    std::fs::write(&file, &big).unwrap();
    let from_file = enqueue(&db, &["blob.store", &format!("@{}", file.display())]);

    let mut command = Command::new(env!("CARGO_BIN_EXE_solidq"));
    command.current_dir(db.dir.path()).args(["enqueue", "blob.store", "-"]).env("SOLIDQ_DATABASE_URL", &db.url);
    command.env("SOLIDQ_LOG", "error").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), big.as_bytes()).unwrap();
    let run: Run = child.wait_with_output().unwrap().into();
    run.assert_ok();
    let from_stdin: i64 = run.stdout.trim().parse().unwrap();
    assert_ne!(from_file, from_stdin);
    let missing = db.run(&["enqueue", "blob.store", "@/no/such/payload.json"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("cannot read the payload file /no/such/payload.json"), "{}", missing.stderr);
}

/// `--in` names its accepted forms for a negative delay, and a delay too long to store is a
/// named error (exit 2), not a panic (exit 101).
#[test]
fn enqueue_delays_out_of_range_are_named_errors() {
    let (db, path) = sqlite_db();
    let negative = db.run(&["enqueue", "ping", "{}", "--in", "-5s"]);
    assert_eq!(negative.code, 2, "{}", negative.stderr);
    assert!(negative.stderr.contains("a delay cannot be negative (use e.g. 500ms, 10s"), "{}", negative.stderr);
    for huge in ["99999999999h", "80000000h"] {
        let run = db.run(&["enqueue", "ping", "{}", "--in", huge]);
        assert_eq!(run.code, 2, "--in {huge}: {}", run.stderr);
        assert!(run.stderr.contains("the latest time solidq stores"), "--in {huge}: {}", run.stderr);
    }
    assert!(!path.exists(), "nothing was written for the refused jobs");
}

/// Kinds, queue names, unique keys and concurrency keys that operators could not type or a
/// dashboard could not show are refused (exit 2) with the field and the rule, and nothing is
/// written; so is pausing such a queue.
#[test]
fn names_with_control_characters_blanks_or_too_long_are_refused_naming_the_field() {
    let (db, path) = sqlite_db();
    let long = "k".repeat(256);
    let cases: [(&[&str], &str); 8] = [
        (&["enqueue", "k\u{1}", "{}"], "the kind \"k\\u{1}\" contains the control character U+0001"),
        (&["enqueue", " k", "{}"], "the kind \" k\" has leading or trailing whitespace"),
        (&["enqueue", &long, "{}"], "is 256 bytes long"),
        (&["enqueue", "k", "{}", "--queue", " "], "the queue name \" \" has leading or trailing whitespace"),
        (&["enqueue", "k", "{}", "--queue", "a\tb"], "the queue name \"a\\tb\" contains the control character"),
        (&["enqueue", "k", "{}", "--unique-key", ""], "the unique key is empty"),
        (&["enqueue", "k", "{}", "--concurrency-key", "acct:1\n"], "the concurrency key \"acct:1\\n\" contains"),
        (&["queues", "pause", "mail "], "the queue name \"mail \" has leading or trailing whitespace"),
    ];
    for (args, expected) in cases {
        let run = db.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("must be 1 to 255 bytes, without control characters"), "{}", run.stderr);
    }
    assert!(path.exists(), "the pause connected");
    assert_eq!(status_json(&db)["jobs"]["ready"], 0, "nothing was enqueued");
    let exactly_255 = "k".repeat(255);
    enqueue(&db, &[&exactly_255, "{}", "--queue", "a queue with inner spaces"]);
}

/// Enqueueing to a queue or a kind that no live process serves succeeds, with a warning that
/// says why the job will wait.
#[test]
fn enqueue_warns_when_no_live_process_would_run_the_job() {
    let (db, path) = sqlite_db();
    let run = db.run(&["enqueue", "report.weekly", "{}"]);
    run.assert_ok();
    assert!(run.stderr.contains("warning: no live process is registered"), "{}", run.stderr);

    let store = solidq::Store::connect(&solidq::DatabaseUrl::Sqlite(path), 1).unwrap();
    let metadata = solidq::model::ProcessMetadata {
        details: solidq::model::ProcessDetails {
            kinds: vec!["mailer.welcome".into()],
            workers: vec![solidq::model::WorkerDetails { queues: vec!["mailers".into()], concurrency: 3 }],
            backend: "sqlite".into(),
        },
        ..Default::default()
    };
    let process = solidq::model::NewProcess {
        kind: "Runtime".into(),
        name: "web-1".into(),
        pid: 1,
        hostname: "web".into(),
        metadata,
    };
    store.register_process(&process, chrono::Utc::now().naive_utc()).unwrap();

    let unserved = db.run(&["enqueue", "report.weekly", "{}"]);
    unserved.assert_ok();
    assert!(
        unserved.stderr.contains(r#"no live process works queue "default" (live processes work mailers)"#),
        "{}",
        unserved.stderr
    );
    assert!(
        unserved.stderr.contains(r#"no live process has a handler for kind "report.weekly""#),
        "{}",
        unserved.stderr
    );
    let served = db.run(&["enqueue", "mailer.welcome", "{}", "--queue", "mailers"]);
    served.assert_ok();
    assert_eq!(served.stderr, "", "a job a live process runs gets no warning");
}

/// `jobs` and `queues`: list with and without --json, show, discard, retry, cancel, pause,
/// resume, and the errors an operator meets.
fn jobs_and_queues(db: &Db) {
    let first = enqueue(db, &["mail", r#"{"to": 1}"#, "--unique-key", "mail:1"]);
    let again = db.run(&["enqueue", "mail", r#"{"to": 1}"#, "--unique-key", "mail:1"]);
    again.assert_ok();
    assert_eq!(again.stdout.trim(), first.to_string());
    assert!(again.stderr.contains("holds the unique key"), "{}", again.stderr);
    let later = enqueue(db, &["report", "{}", "--in", "1h", "--queue", "reports"]);
    let sync = |n: &str| enqueue(db, &["sync", n, "--queue", "accounts", "--concurrency-key", "acct:1"]);
    let (sync_first, sync_second) = (sync("1"), sync("2"));
    let blocked = db.run(&["jobs", "list", "--state", "blocked", "--json"]);
    let blocked: Value = serde_json::from_str(&blocked.assert_ok().stdout).unwrap();
    assert_eq!(blocked.as_array().unwrap().len(), 1, "{blocked}");
    assert_eq!(blocked[0]["id"], sync_second);
    db.run(&["jobs", "cancel", &sync_first.to_string()]).assert_ok();
    db.run(&["jobs", "cancel", &sync_second.to_string()]).assert_ok();
    let bad = db.run(&["enqueue", "sync", "3", "--concurrency-limit", "2"]);
    assert_eq!(bad.code, 2, "a limit without a key is a usage error");

    let listed = db.run(&["jobs", "list", "--state", "ready", "--json"]);
    listed.assert_ok();
    let rows: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["id"], first);
    assert_eq!(rows[0]["state"], "ready");
    let table = db.run(&["jobs", "list", "--state", "scheduled", "--queue", "reports"]);
    assert!(table.assert_ok().stdout.contains("report"), "{}", table.stdout);

    let run = db.run(&["jobs", "cancel", &later.to_string()]);
    assert!(run.assert_ok().stdout.contains("cancelled"), "{}", run.stdout);
    let run = db.run(&["jobs", "discard", &first.to_string()]);
    run.assert_ok();
    let shown = db.run(&["jobs", "show", &first.to_string(), "--json"]);
    let row: Value = serde_json::from_str(&shown.assert_ok().stdout).unwrap();
    assert_eq!(row["state"], "discarded");
    let run = db.run(&["jobs", "retry", &first.to_string()]);
    run.assert_ok();
    let shown = db.run(&["jobs", "show", &first.to_string()]);
    assert!(shown.assert_ok().stdout.contains("ready"), "{}", shown.stdout);
    let run = db.run(&["jobs", "retry", "--all", "--kind", "mail"]);
    assert!(run.assert_ok().stdout.starts_with("0 failed jobs"), "{}", run.stdout);

    let missing = db.run(&["jobs", "retry", "999999"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("job 999999 does not exist"), "{}", missing.stderr);
    let ended = db.run(&["jobs", "cancel", &later.to_string()]);
    assert_eq!(ended.code, 2);
    assert!(ended.stderr.contains("already ended"), "{}", ended.stderr);
    let bad_state = db.run(&["jobs", "list", "--state", "done"]);
    assert_eq!(bad_state.code, 2);
    assert!(bad_state.stderr.contains("is not a job state"), "{}", bad_state.stderr);

    db.run(&["queues", "pause", "default"]).assert_ok();
    let queues = db.run(&["queues", "list", "--json"]);
    let queues: Value = serde_json::from_str(&queues.assert_ok().stdout).unwrap();
    let default = queues.as_array().unwrap().iter().find(|q| q["name"] == "default").expect("default listed");
    assert_eq!((default["paused"].clone(), default["ready"].clone()), (Value::Bool(true), Value::from(1)));
    let table = db.run(&["queues", "list"]);
    assert!(table.assert_ok().stdout.contains("yes"), "{}", table.stdout);
    let run = db.run(&["queues", "resume", "default"]);
    assert!(run.assert_ok().stdout.contains("resumed"), "{}", run.stdout);
    let run = db.run(&["queues", "resume", "default"]);
    assert!(run.assert_ok().stdout.contains("was not paused"), "{}", run.stdout);
}

#[test]
fn sqlite_jobs_and_queues() {
    let (db, _) = sqlite_db();
    jobs_and_queues(&db);
}

#[test]
fn postgres_jobs_and_queues() {
    if let Some(db) = postgres_db() {
        jobs_and_queues(&db);
    }
}
/// `solidq recurring add|list|remove`: dynamic tasks added, listed (table and JSON) and
/// removed; a bad schedule, zone or key exits 2 naming the problem.
fn recurring_add_list_remove(db: &Db) {
    db.run(&["migrate"]).assert_ok();
    let run = db.run(&["recurring", "list"]);
    run.assert_ok();
    assert_eq!(run.stdout, "no recurring tasks\n");
    let run = db.run(&[
        "recurring",
        "add",
        "nightly",
        "--schedule",
        "30 2 * * *",
        "--kind",
        "reports.nightly",
        "--args",
        r#"{"format": "pdf"}"#,
        "--queue",
        "reports",
        "--priority",
        "-1",
        "--time-zone",
        "Europe/Berlin",
        "--run-missed",
        "latest",
    ]);
    run.assert_ok();
    assert!(run.stdout.starts_with("added recurring task nightly: 30 2 * * *; next run "), "{}", run.stdout);
    db.run(&["recurring", "add", "ping", "--schedule", "every 30s", "--kind", "ping"]).assert_ok();
    let table = db.run(&["recurring", "list"]);
    table.assert_ok();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    assert!(lines[0].starts_with("KEY") && lines[0].contains("NEXT RUN (UTC)"), "{}", table.stdout);
    assert!(lines[1].starts_with("nightly") && lines[1].contains("Europe/Berlin") && lines[1].contains("dynamic"));
    let json: Value = serde_json::from_str(&db.run(&["recurring", "list", "--json"]).stdout).unwrap();
    let tasks = json.as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["key"], "nightly");
    assert_eq!(tasks[0]["arguments"]["format"], "pdf");
    assert_eq!(
        (&tasks[0]["priority"], &tasks[0]["run_missed"], &tasks[0]["static"]),
        (&(-1).into(), &"latest".into(), &false.into())
    );
    assert!(tasks[1]["next_run_at"].is_string(), "{json}");

    let bad = |args: &[&str], problem: &str| {
        let mut all = vec!["recurring", "add", "bad"];
        all.extend_from_slice(args);
        let run = db.run(&all);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(problem), "{args:?}: {}", run.stderr);
    };
    bad(&["--schedule", "* * *", "--kind", "k"], "schedule \"* * *\" has 3 fields");
    bad(&["--schedule", "every 5w", "--kind", "k"], "every <n>s|m|h|d");
    bad(&["--schedule", "@daily", "--kind", "k", "--time-zone", "Berlin"], "time zone \"Berlin\" is not an IANA");
    bad(&["--schedule", "@daily", "--kind", "k", "--queue", "a*"], "queue name \"a*\"");
    bad(&["--schedule", "@daily", "--kind", "k", "--args", "{"], "not valid JSON");
    bad(&["--schedule", "@daily", "--kind", "k", "--run-missed", "sometimes"], "run_missed");

    db.run(&["recurring", "remove", "ping"]).assert_ok();
    let run = db.run(&["recurring", "remove", "ping"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("there is no recurring task \"ping\""), "{}", run.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&db.run(&["recurring", "list", "--json"]).stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn sqlite_recurring_add_list_remove() {
    let (db, _) = sqlite_db();
    recurring_add_list_remove(&db);
}

#[test]
fn postgres_recurring_add_list_remove() {
    if let Some(db) = postgres_db() {
        recurring_add_list_remove(&db);
    }
}

#[test]
fn a_bad_recurring_file_exits_2_naming_the_task() {
    let (db, _) = sqlite_db();
    let path = db.dir.path().join("tasks.toml");
    std::fs::write(&path, "[nightly]\nkind = \"k\"\nschedule = \"every 0s\"\n").unwrap();
    let run = db.run_with(&[("SOLIDQ_RECURRING", path.to_str().unwrap())], &["recurring", "list"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("SOLIDQ_RECURRING="), "{}", run.stderr);
    assert!(
        run.stderr.contains("recurring task \"nightly\": schedule \"every 0s\" has an interval of zero"),
        "{}",
        run.stderr
    );
}

/// `enqueue --rate-limit KEY:N/PERIOD` stores the limit, `jobs show` prints it (text and JSON),
/// and a malformed one is a usage error naming the problem.
#[test]
fn enqueue_takes_a_rate_limit_and_jobs_show_prints_it() {
    let (db, _path) = sqlite_db();
    let id = enqueue(&db, &["email.send", "{}", "--rate-limit", "email:100/1m"]);
    let shown = db.run(&["jobs", "show", &id.to_string()]);
    assert!(shown.assert_ok().stdout.contains("rate limit: email:100/1m"), "{}", shown.stdout);
    let json = db.run(&["jobs", "show", &id.to_string(), "--json"]);
    let value: Value = serde_json::from_str(&json.assert_ok().stdout).unwrap();
    assert_eq!(value["rate_limit"], "email:100/1m", "{value}");
    for (limit, problem) in [("email:0/1m", "at least 1 start"), ("email:5", "no '/'"), ("email:5/0s", "at least 1ms")]
    {
        let run = db.run(&["enqueue", "email.send", "{}", "--rate-limit", limit]);
        assert_eq!(run.code, 2, "{limit}: {}", run.stderr);
        assert!(run.stderr.contains(problem), "{limit}: {}", run.stderr);
    }
}

/// `rate-limits` lists each key with its limit and its jobs by state (text and JSON); a key
/// containing ':' keeps it, and the table shows the limit without repeating the key.
#[test]
fn rate_limits_lists_each_key_with_its_limit_and_jobs() {
    let (db, _path) = sqlite_db();
    db.run(&["migrate"]).assert_ok();
    let empty = db.run(&["rate-limits"]);
    assert!(empty.assert_ok().stdout.ends_with("0 keys\n"), "{}", empty.stdout);
    for _ in 0..3 {
        enqueue(&db, &["mail.send", "{}", "--rate-limit", "email:provider-a:100/1m"]);
    }
    enqueue(&db, &["api.call", "{}", "--rate-limit", "api:5/1s"]);
    enqueue(&db, &["plain.job", "{}"]);
    let listed = db.run(&["rate-limits"]);
    let text = listed.assert_ok().stdout.clone();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("KEY") && lines[0].contains("IN WINDOW") && lines[0].contains("NEXT DUE"), "{text}");
    let api: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(api[..6], ["api", "5/1s", "0", "1", "0", "0"], "{text}");
    let email: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(email[..6], ["email:provider-a", "100/1m", "0", "3", "0", "0"], "{text}");
    assert_eq!(lines[3], "2 keys");
    let json = db.run(&["rate-limits", "--json"]);
    let value: Value = serde_json::from_str(&json.assert_ok().stdout).unwrap();
    assert_eq!(value[1]["key"], "email:provider-a", "{value}");
    assert_eq!(value[1]["limit"], "email:provider-a:100/1m", "{value}");
    assert_eq!(value[1]["ready"], 3, "{value}");
    assert_eq!(value[1]["in_window"], 0, "{value}");
}
