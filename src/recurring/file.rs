//! Task files: the TOML or JSON file `SOLIDQ_RECURRING` names, a table per task.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::error::RecurringError;
use super::{RecurringTask, RunMissed};

/// One task of a task file, keyed by its name in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskDefinition {
    kind: String,
    schedule: String,
    #[serde(default, alias = "args")]
    arguments: Option<serde_json::Value>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default, alias = "timezone")]
    time_zone: Option<String>,
    #[serde(default)]
    run_missed: Option<RunMissed>,
}

impl TaskDefinition {
    fn into_task(self, key: &str) -> Result<RecurringTask, RecurringError> {
        let mut task = RecurringTask::new(key, &self.schedule, &self.kind)?;
        if let Some(arguments) = self.arguments {
            task.arguments = arguments;
        }
        if let Some(queue) = self.queue {
            task.queue = queue;
        }
        if let Some(priority) = self.priority {
            task.priority = priority;
        }
        if let Some(zone) = self.time_zone {
            task = task.time_zone(&zone)?;
        }
        task.run_missed = self.run_missed.unwrap_or_default();
        match task.problem() {
            Some(problem) => Err(RecurringError::task(key, RecurringError::Invalid(problem))),
            None => Ok(task),
        }
    }
}

/// Reads a task file (`SOLIDQ_RECURRING`): TOML when its name ends in `.toml`, JSON when in
/// `.json`. Each top-level table (TOML) or member (JSON) is one task, named by its key:
///
/// ```toml
/// [nightly-report]
/// kind = "reports.nightly"          # required: the job's kind
/// schedule = "30 2 * * *"           # required: cron (5 or 6 fields) or "every 30s"
/// time_zone = "Europe/Berlin"       # default UTC
/// arguments = { format = "pdf" }    # the job's JSON arguments, default null
/// queue = "reports"                 # default "default"
/// priority = 5                      # default 0
/// run_missed = "latest"             # or true; default "skip" (false)
/// ```
///
/// Returns the tasks ordered by key, or every problem found (one per line).
pub fn load_file(path: &Path) -> Result<Vec<RecurringTask>, Vec<RecurringError>> {
    let shown = path.display().to_string();
    let file_error = |problem: String| vec![RecurringError::File { path: shown.clone(), problem }];
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let text = std::fs::read_to_string(path).map_err(|err| file_error(format!("cannot be read: {err}")))?;
    let definitions: BTreeMap<String, TaskDefinition> = match extension.as_deref() {
        Some("toml") => {
            toml::from_str(&text).map_err(|err| file_error(format!("is not valid: {}", err.to_string().trim())))?
        }
        Some("json") => serde_json::from_str(&text).map_err(|err| file_error(format!("is not valid: {err}")))?,
        _ => return Err(file_error("has neither a .toml nor a .json extension".into())),
    };
    parse_definitions(definitions)
}

/// Reads tasks from the text of a task file in `format` (`toml` or `json`), as
/// [`load_file`] does.
pub fn parse_tasks(text: &str, format: &str) -> Result<Vec<RecurringTask>, Vec<RecurringError>> {
    let text_error = |problem: String| vec![RecurringError::File { path: format!("({format})"), problem }];
    let definitions: BTreeMap<String, TaskDefinition> = match format {
        "toml" => {
            toml::from_str(text).map_err(|err| text_error(format!("is not valid: {}", err.to_string().trim())))?
        }
        "json" => serde_json::from_str(text).map_err(|err| text_error(format!("is not valid: {err}")))?,
        _ => return Err(text_error("is neither toml nor json".into())),
    };
    parse_definitions(definitions)
}

fn parse_definitions(definitions: BTreeMap<String, TaskDefinition>) -> Result<Vec<RecurringTask>, Vec<RecurringError>> {
    let mut tasks = Vec::new();
    let mut problems = Vec::new();
    for (key, definition) in definitions {
        match definition.into_task(&key) {
            Ok(task) => tasks.push(task),
            Err(err) => problems.push(err),
        }
    }
    if problems.is_empty() {
        Ok(tasks)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    #[test]
    fn task_files_in_toml_and_json() {
        let toml = r#"
            [nightly]
            kind = "reports.nightly"
            schedule = "30 2 * * *"
            time_zone = "Europe/Berlin"
            arguments = { format = "pdf" }
            queue = "reports"
            priority = 5
            run_missed = "latest"

            [ping]
            kind = "ping"
            schedule = "every 30s"
            run_missed = true
        "#;
        let tasks = parse_tasks(toml, "toml").unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].key, "nightly");
        assert_eq!(tasks[0].arguments, serde_json::json!({"format": "pdf"}));
        assert_eq!((tasks[0].queue.as_str(), tasks[0].priority), ("reports", 5));
        assert_eq!(tasks[0].time_zone, Tz::Europe__Berlin);
        assert_eq!(tasks[1].run_missed, RunMissed::Latest);
        assert_eq!(tasks[1].arguments, serde_json::Value::Null);
        let json = r#"{"ping": {"kind": "ping", "schedule": "every 30s", "args": [1, 2]}}"#;
        assert_eq!(parse_tasks(json, "json").unwrap()[0].arguments, serde_json::json!([1, 2]));

        let bad = r#"
            [a]
            kind = "k"
            schedule = "* *"
            [b]
            kind = "k"
            schedule = "every 1m"
            time_zone = "Nowhere/City"
            [c]
            kind = "k"
            schedule = "every 1m"
            clas = "typo"
        "#;
        let problems: Vec<String> = parse_tasks(bad, "toml").unwrap_err().iter().map(|e| e.to_string()).collect();
        assert_eq!(problems.len(), 1, "an unknown field fails the whole file: {problems:?}");
        assert!(problems[0].contains("clas"), "{problems:?}");
        let problems: Vec<String> = parse_tasks(&bad.replace("clas = \"typo\"", ""), "toml")
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("recurring task \"a\": schedule \"* *\" has 2 fields"), "{problems:?}");
        assert!(problems[1].contains("\"Nowhere/City\" is not an IANA time zone"), "{problems:?}");
        let queue = parse_tasks(r#"{"q": {"kind": "k", "schedule": "every 1m", "queue": "a*"}}"#, "json").unwrap_err();
        assert!(queue[0].to_string().contains("queue name \"a*\""), "{queue:?}");
    }
}
