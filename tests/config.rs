//! Public behaviour of `Config::from_lookup`: defaults, every variable's malformed value is
//! reported by name, all problems at once, the heartbeat/threshold rule and the workers syntax.
//! No test touches the process environment.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use solidq::config::{
    default_pool_size, Config, ConfigError, DatabaseUrl, LogFormat, WorkerGroup, DEFAULT_ALIVE_THRESHOLD,
    DEFAULT_DISPATCHER_BATCH_SIZE, DEFAULT_DISPATCHER_POLLING_INTERVAL, DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_POLLING_INTERVAL, DEFAULT_POOL_SIZE, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_WATCHDOG_INTERVAL,
    POOL_BESIDE_WORKERS,
};
use solidq::model::{DeathPolicy, QueuePattern};

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Config::from_lookup(|name| env.get(name).cloned())
}

fn problem_variables(err: &ConfigError) -> Vec<&str> {
    err.problems.iter().map(|p| p.variable).collect()
}

/// Unset, the pool follows the worker groups (one claim under way each) beside what every
/// process uses; set, it is what it says.
#[test]
fn the_default_pool_follows_the_worker_groups() {
    let three_groups = config(&[("SOLIDQ_WORKERS", "a:5;b:5;c*:5")]).unwrap();
    assert_eq!(three_groups.pool_size, default_pool_size(3));
    assert_eq!(default_pool_size(3), 3 + POOL_BESIDE_WORKERS);
    assert!(default_pool_size(1) >= DEFAULT_POOL_SIZE);
    assert_eq!(default_pool_size(usize::MAX), 512, "within SOLIDQ_POOL_SIZE's range");
    let set = config(&[("SOLIDQ_WORKERS", "a:5;b:5;c*:5"), ("SOLIDQ_POOL_SIZE", "4")]).unwrap();
    assert_eq!(set.pool_size, 4);
}

#[test]
fn an_empty_environment_gives_the_defaults() {
    let config = config(&[]).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.database_url, DatabaseUrl::Sqlite(PathBuf::from("solidq.sqlite3")));
    assert_eq!(config.pool_size, default_pool_size(1));
    assert_eq!(config.workers, vec![WorkerGroup { queues: vec![QueuePattern::All], concurrency: 200 }]);
    assert_eq!(config.total_concurrency(), 200);
    assert_eq!(config.polling_interval, DEFAULT_POLLING_INTERVAL);
    assert_eq!(config.dispatcher_batch_size, DEFAULT_DISPATCHER_BATCH_SIZE);
    assert_eq!(config.dispatcher_polling_interval, DEFAULT_DISPATCHER_POLLING_INTERVAL);
    assert_eq!(config.heartbeat_interval, DEFAULT_HEARTBEAT_INTERVAL);
    assert_eq!(config.alive_threshold, DEFAULT_ALIVE_THRESHOLD);
    assert_eq!(config.watchdog_interval, DEFAULT_WATCHDOG_INTERVAL);
    assert_eq!(config.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    assert!(config.auto_migrate);
    assert_eq!(config.on_process_death, DeathPolicy::Retry);
    assert_eq!(config.log_level, slog::Level::Info);
    assert_eq!(config.log_format, LogFormat::Term);
}

#[test]
fn the_default_constants_agree_with_the_default_config() {
    let from_consts = config(&[
        ("SOLIDQ_DATABASE_URL", solidq::config::DEFAULT_DATABASE_URL),
        ("SOLIDQ_WORKERS", solidq::config::DEFAULT_WORKERS),
    ])
    .unwrap();
    assert_eq!(from_consts, Config::default());
}

#[test]
fn every_variable_is_read() {
    let config = config(&[
        ("SOLIDQ_DATABASE_URL", "postgres://app:pw@db:5432/jobs"),
        ("SOLIDQ_POOL_SIZE", "20"),
        ("SOLIDQ_WORKERS", "critical,default:5;reports*:2"),
        ("SOLIDQ_POLLING_INTERVAL", "250ms"),
        ("SOLIDQ_DISPATCHER_BATCH_SIZE", "100"),
        ("SOLIDQ_DISPATCHER_POLLING_INTERVAL", "2s"),
        ("SOLIDQ_HEARTBEAT_INTERVAL", "10"),
        ("SOLIDQ_ALIVE_THRESHOLD", "1m"),
        ("SOLIDQ_WATCHDOG_INTERVAL", "1.5"),
        ("SOLIDQ_SHUTDOWN_TIMEOUT", "1h"),
        ("SOLIDQ_AUTO_MIGRATE", "no"),
        ("SOLIDQ_ON_PROCESS_DEATH", "fail"),
        ("SOLIDQ_LOG", "debug"),
        ("SOLIDQ_LOG_FORMAT", "json"),
    ])
    .unwrap();
    assert_eq!(config.database_url, DatabaseUrl::Postgres("postgres://app:pw@db:5432/jobs".into()));
    assert_eq!(config.pool_size, 20);
    assert_eq!(config.total_concurrency(), 7);
    assert_eq!(config.polling_interval, Duration::from_millis(250));
    assert_eq!(config.dispatcher_batch_size, 100);
    assert_eq!(config.dispatcher_polling_interval, Duration::from_secs(2));
    assert_eq!(config.heartbeat_interval, Duration::from_secs(10));
    assert_eq!(config.alive_threshold, Duration::from_secs(60));
    assert_eq!(config.watchdog_interval, Duration::from_millis(1500));
    assert_eq!(config.shutdown_timeout, Duration::from_secs(3600));
    assert!(!config.auto_migrate);
    assert_eq!(config.on_process_death, DeathPolicy::Fail);
    assert_eq!(config.log_level, slog::Level::Debug);
    assert_eq!(config.log_format, LogFormat::Json);
}

#[test]
fn every_malformed_variable_is_named_with_its_value_and_the_accepted_form() {
    let cases = [
        ("SOLIDQ_DATABASE_URL", "oracle://db/jobs"),
        ("SOLIDQ_POOL_SIZE", "abc"),
        ("SOLIDQ_WORKERS", "default"),
        ("SOLIDQ_POLLING_INTERVAL", "fast"),
        ("SOLIDQ_DISPATCHER_BATCH_SIZE", "-1"),
        ("SOLIDQ_DISPATCHER_POLLING_INTERVAL", "1 sec"),
        ("SOLIDQ_HEARTBEAT_INTERVAL", "ten"),
        ("SOLIDQ_ALIVE_THRESHOLD", "5 minutes"),
        ("SOLIDQ_WATCHDOG_INTERVAL", "x"),
        ("SOLIDQ_SHUTDOWN_TIMEOUT", "-5s"),
        ("SOLIDQ_AUTO_MIGRATE", "maybe"),
        ("SOLIDQ_ON_PROCESS_DEATH", "ignore"),
        ("SOLIDQ_LOG", "verbose"),
        ("SOLIDQ_LOG_FORMAT", "xml"),
    ];
    for (variable, value) in cases {
        let err = config(&[(variable, value)]).expect_err(variable);
        assert_eq!(problem_variables(&err), vec![variable], "{err}");
        let problem = &err.problems[0];
        assert_eq!(problem.value, value);
        assert!(!problem.expected.is_empty());
        let text = err.to_string();
        assert!(text.starts_with(&format!("{variable}={value:?} ")), "{variable}: {text}");
    }
}

#[test]
fn all_problems_are_reported_at_once_one_per_line() {
    let err = config(&[
        ("SOLIDQ_POOL_SIZE", "abc"),
        ("SOLIDQ_HEARTBEAT_INTERVAL", "ten"),
        ("SOLIDQ_LOG", "loud"),
        ("SOLIDQ_DATABASE_URL", "redis://cache"),
    ])
    .unwrap_err();
    assert_eq!(
        problem_variables(&err),
        vec!["SOLIDQ_DATABASE_URL", "SOLIDQ_POOL_SIZE", "SOLIDQ_HEARTBEAT_INTERVAL", "SOLIDQ_LOG"]
    );
    let text = err.to_string();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.contains(
        r#"SOLIDQ_HEARTBEAT_INTERVAL="ten" is not a duration (use e.g. 500ms, 10s, 5m, 2h, 1d or bare seconds)"#
    ));
    assert!(err.mentions("SOLIDQ_POOL_SIZE"));
    assert!(!err.mentions("SOLIDQ_WORKERS"));
    let as_error: &dyn std::error::Error = &err;
    assert_eq!(as_error.to_string(), text);
}

#[test]
fn zero_and_empty_values_are_rejected() {
    for variable in [
        "SOLIDQ_POLLING_INTERVAL",
        "SOLIDQ_DISPATCHER_POLLING_INTERVAL",
        "SOLIDQ_HEARTBEAT_INTERVAL",
        "SOLIDQ_ALIVE_THRESHOLD",
        "SOLIDQ_WATCHDOG_INTERVAL",
    ] {
        let err = config(&[(variable, "0s")]).expect_err(variable);
        assert!(err.mentions(variable), "{err}");
        assert!(err.to_string().contains("is too short (use from "), "{err}");
    }
    for variable in ["SOLIDQ_POOL_SIZE", "SOLIDQ_DISPATCHER_BATCH_SIZE"] {
        let err = config(&[(variable, "0")]).expect_err(variable);
        assert_eq!(problem_variables(&err), vec![variable]);
    }
    // Not waiting for running jobs at all is a legitimate choice.
    let config_zero = config(&[("SOLIDQ_SHUTDOWN_TIMEOUT", "0")]).unwrap();
    assert_eq!(config_zero.shutdown_timeout, Duration::ZERO);
    // An empty value is an error, not a silent fallback to the default.
    let err = config(&[("SOLIDQ_DATABASE_URL", "")]).unwrap_err();
    assert_eq!(problem_variables(&err), vec!["SOLIDQ_DATABASE_URL"]);
    assert!(err.to_string().contains("is empty"), "{err}");
}

/// A typo must not exhaust the database server or a CPU: every knob has a range, named in the
/// error with the variable.
#[test]
fn every_knob_has_a_range_named_in_its_error() {
    let cases = [
        ("SOLIDQ_POOL_SIZE", "100000", "is more than 512 (use a whole number from 1 to 512"),
        ("SOLIDQ_WORKERS", "*:99999999999", "outside 1 to 10000"),
        ("SOLIDQ_DISPATCHER_BATCH_SIZE", "1000000", "is more than 10000"),
        ("SOLIDQ_POLLING_INTERVAL", "0.000001", "is too short (use from 1ms to 1h"),
        ("SOLIDQ_POLLING_INTERVAL", "99999999999h", "is too long (use from 1ms to 1h"),
        ("SOLIDQ_DISPATCHER_POLLING_INTERVAL", "1ms", "is too short (use from 10ms to 1h"),
        ("SOLIDQ_HEARTBEAT_INTERVAL", "2h", "is too long (use from 100ms to 1h"),
        ("SOLIDQ_ALIVE_THRESHOLD", "30x", "is not a duration"),
        ("SOLIDQ_CLEAR_FINISHED_AFTER", "0.5", "is too short (use from 1s to"),
        ("SOLIDQ_PRESERVE_FINISHED_JOBS", "maybe", "SOLIDQ_PRESERVE_FINISHED_JOBS=\"maybe\""),
        ("SOLIDQ_ALIVE_THRESHOLD", "25h", "is too long (use from 200ms to 24h"),
        ("SOLIDQ_WATCHDOG_INTERVAL", "1ms", "is too short (use from 10ms to 1h"),
        ("SOLIDQ_SHUTDOWN_TIMEOUT", "48h", "is too long (use from 0s to 24h"),
    ];
    for (variable, value, expected) in cases {
        let err = config(&[(variable, value)]).expect_err(variable);
        assert_eq!(problem_variables(&err), vec![variable], "{err}");
        assert!(err.to_string().contains(expected), "{variable}={value}: {err}");
    }
    let within =
        config(&[("SOLIDQ_POOL_SIZE", "512"), ("SOLIDQ_WORKERS", "*:10000"), ("SOLIDQ_POLLING_INTERVAL", "1ms")]);
    assert!(within.is_ok(), "{within:?}");
}

#[test]
fn database_urls_by_scheme() {
    let url = |text: &str| config(&[("SOLIDQ_DATABASE_URL", text)]).map(|c| c.database_url);
    assert_eq!(url("sqlite://data/jobs.sqlite3").unwrap(), DatabaseUrl::Sqlite(PathBuf::from("data/jobs.sqlite3")));
    assert_eq!(
        url("sqlite:///var/lib/solidq/jobs.sqlite3").unwrap(),
        DatabaseUrl::Sqlite(PathBuf::from("/var/lib/solidq/jobs.sqlite3"))
    );
    assert_eq!(
        url("postgresql://localhost/jobs").unwrap(),
        DatabaseUrl::Postgres("postgresql://localhost/jobs".into())
    );

    let err = url("sqlite://").unwrap_err();
    assert_eq!(problem_variables(&err), vec!["SOLIDQ_DATABASE_URL"]);

    // Every build parses MySQL URLs (one built without the `mysql` feature refuses to connect).
    assert_eq!(url("mysql://app:pw@db:3306/jobs").unwrap(), DatabaseUrl::Mysql("mysql://app:pw@db:3306/jobs".into()));
    assert_eq!(url("mariadb://db/jobs").unwrap(), DatabaseUrl::Mysql("mysql://db/jobs".into()));

    let err = url("oracle://root:hunter2@db/jobs").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("\"oracle\""), "{text}");
    for accepted in ["sqlite://", "sqlite:///", "postgres://", "postgresql://", "mysql://"] {
        assert!(text.contains(accepted), "{text}");
    }
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
}

#[test]
fn database_url_display_hides_the_password() {
    let url = DatabaseUrl::parse("postgres://app:s3cret@db:5432/jobs").unwrap();
    assert_eq!(url.to_string(), "postgres://app:***@db:5432/jobs");
    let url = DatabaseUrl::parse("postgres://db/jobs?user=app&password=s3cret").unwrap();
    assert!(!url.to_string().contains("s3cret"));
    let url = DatabaseUrl::parse("sqlite:///tmp/jobs.sqlite3").unwrap();
    assert_eq!(url.to_string(), "sqlite:///tmp/jobs.sqlite3");
    let url = DatabaseUrl::parse("mysql://app:s3cret@db:3306/jobs").unwrap();
    assert!(!url.to_string().contains("s3cret"), "{url}");
}

#[test]
fn the_alive_threshold_must_be_at_least_twice_the_heartbeat_interval() {
    let err = config(&[("SOLIDQ_HEARTBEAT_INTERVAL", "10s"), ("SOLIDQ_ALIVE_THRESHOLD", "15s")]).unwrap_err();
    assert_eq!(problem_variables(&err), vec!["SOLIDQ_ALIVE_THRESHOLD"]);
    let text = err.to_string();
    for needle in ["SOLIDQ_ALIVE_THRESHOLD", "\"15s\"", "SOLIDQ_HEARTBEAT_INTERVAL", "\"10s\"", "20s"] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }

    // Exactly twice is enough.
    config(&[("SOLIDQ_HEARTBEAT_INTERVAL", "10s"), ("SOLIDQ_ALIVE_THRESHOLD", "20s")]).unwrap();

    // The rule also holds against a default: a 3m heartbeat with the 5m default threshold.
    let err = config(&[("SOLIDQ_HEARTBEAT_INTERVAL", "3m")]).unwrap_err();
    assert_eq!(problem_variables(&err), vec!["SOLIDQ_ALIVE_THRESHOLD"]);
    assert!(err.to_string().contains("\"5m\" (the default)"), "{err}");

    // A malformed heartbeat is reported once, without a second complaint about the rule.
    let err = config(&[("SOLIDQ_HEARTBEAT_INTERVAL", "ten"), ("SOLIDQ_ALIVE_THRESHOLD", "1s")]).unwrap_err();
    assert_eq!(problem_variables(&err), vec!["SOLIDQ_HEARTBEAT_INTERVAL"]);
}

#[test]
fn worker_groups_syntax() {
    let workers = |text: &str| config(&[("SOLIDQ_WORKERS", text)]).map(|c| c.workers);
    assert_eq!(
        workers("critical,default:5;reports*:2").unwrap(),
        vec![
            WorkerGroup {
                queues: vec![QueuePattern::Exact("critical".into()), QueuePattern::Exact("default".into()),],
                concurrency: 5,
            },
            WorkerGroup { queues: vec![QueuePattern::Prefix("reports".into())], concurrency: 2 },
        ]
    );
    assert_eq!(workers("*:10").unwrap(), vec![WorkerGroup { queues: vec![QueuePattern::All], concurrency: 10 }]);
    assert_eq!(workers(" mailers : 1 ; * : 2 ;").unwrap().len(), 2, "spaces and a trailing ';' are allowed");

    for bad in ["default", "default:0", "default:many", ":2", "a,,b:2", "a:1;;b:1", "re*ports:1", "critical:5;reports"]
    {
        let err = workers(bad).expect_err(bad);
        assert_eq!(problem_variables(&err), vec!["SOLIDQ_WORKERS"], "{bad}");
        assert!(err.to_string().contains("queue[,queue…]:concurrency"), "{err}");
    }
    let err = workers("critical:5;reports").unwrap_err();
    assert!(err.to_string().contains("group 2"), "{err}");
}

#[test]
fn booleans_levels_and_policies_accept_their_spellings() {
    for (text, expected) in [("true", true), ("1", true), ("YES", true), ("false", false), ("0", false), ("No", false)]
    {
        let config = config(&[("SOLIDQ_AUTO_MIGRATE", text)]).unwrap();
        assert_eq!(config.auto_migrate, expected, "{text}");
    }
    for (text, level) in [
        ("trace", slog::Level::Trace),
        ("debug", slog::Level::Debug),
        ("info", slog::Level::Info),
        ("warn", slog::Level::Warning),
        ("error", slog::Level::Error),
        ("critical", slog::Level::Critical),
    ] {
        assert_eq!(config(&[("SOLIDQ_LOG", text)]).unwrap().log_level, level, "{text}");
    }
    assert_eq!(config(&[("SOLIDQ_ON_PROCESS_DEATH", "retry")]).unwrap().on_process_death, DeathPolicy::Retry);
}

/// `fn main() -> Result<(), Box<dyn Error>>` prints the error it returns with `Debug`: that
/// must read as the CLI's message, not as a structure dump.
#[test]
fn an_error_returned_from_main_prints_as_readable_text() {
    let err = config(&[("SOLIDQ_POOL_SIZE", "lots"), ("SOLIDQ_LOG", "loud")]).unwrap_err();
    let from_main: Box<dyn std::error::Error> = Box::new(solidq::RuntimeError::from(err.clone()));
    let printed = format!("{from_main:?}");
    assert_eq!(printed, from_main.to_string());
    assert!(printed.contains("SOLIDQ_POOL_SIZE=\"lots\" is not a whole number"), "{printed}");
    assert!(printed.contains("SOLIDQ_LOG"), "{printed}");
    assert!(!printed.contains("ConfigProblem") && !printed.contains("problems:"), "{printed}");
    assert_eq!(format!("{err:?}"), err.to_string());
    let store_error: Box<dyn std::error::Error> = Box::new(solidq::StoreError::Migration("no".into()));
    assert_eq!(format!("{store_error:?}"), "migrating the database failed: no");
}

#[test]
fn recurring_tasks_are_read_from_the_file_solidq_recurring_names() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("tasks.toml");
    std::fs::write(&toml, "[ping]\nkind = \"ping\"\nschedule = \"every 30s\"\ntime_zone = \"Europe/Berlin\"\n")
        .unwrap();
    let config = config(&[("SOLIDQ_RECURRING", toml.to_str().unwrap()), ("SOLIDQ_SCHEDULER", "no")]).unwrap();
    assert_eq!(config.recurring_file.as_deref(), Some(toml.as_path()));
    assert_eq!(config.recurring_tasks.len(), 1);
    assert_eq!(config.recurring_tasks[0].key, "ping");
    assert!(!config.scheduler);
    let json = dir.path().join("tasks.json");
    std::fs::write(
        &json,
        r#"{"a": {"kind": "k", "schedule": "0 3 * * *"}, "b": {"kind": "k", "schedule": "@hourly"}}"#,
    )
    .unwrap();
    assert_eq!(self::config(&[("SOLIDQ_RECURRING", json.to_str().unwrap())]).unwrap().recurring_tasks.len(), 2);
}

#[test]
fn a_bad_recurring_file_is_named_with_every_problem_of_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tasks.toml");
    std::fs::write(
        &path,
        "[a]\nkind = \"k\"\nschedule = \"* * *\"\n[b]\nkind = \"k\"\nschedule = \"every 1m\"\ntime_zone = \"Mars/Base\"\n",
    )
    .unwrap();
    let err = config(&[("SOLIDQ_RECURRING", path.to_str().unwrap()), ("SOLIDQ_SCHEDULER", "maybe")]).unwrap_err();
    assert_eq!(problem_variables(&err), ["SOLIDQ_SCHEDULER", "SOLIDQ_RECURRING"]);
    let text = err.to_string();
    assert!(text.contains(&format!("SOLIDQ_RECURRING={:?}", path.to_str().unwrap())), "{text}");
    assert!(text.contains("recurring task \"a\": schedule \"* * *\" has 3 fields"), "{text}");
    assert!(text.contains("recurring task \"b\": time zone \"Mars/Base\" is not an IANA time zone name"), "{text}");
    for (name, content, problem) in [
        ("missing.toml", None, "cannot be read"),
        ("tasks.yaml", Some("a: 1"), "neither a .toml nor a .json"),
        ("broken.json", Some("{"), "is not valid"),
        ("typo.toml", Some("[a]\nkind = \"k\"\nschedule = \"every 1m\"\nqueue_name = \"x\"\n"), "unknown field"),
    ] {
        let path = dir.path().join(name);
        if let Some(content) = content {
            std::fs::write(&path, content).unwrap();
        }
        let err = config(&[("SOLIDQ_RECURRING", path.to_str().unwrap())]).unwrap_err().to_string();
        assert!(err.contains(problem), "{name}: {err}");
    }
}
