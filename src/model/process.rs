//! Process rows and what a process writes into them: the `metadata` column, typed
//! ([`ProcessMetadata`]). The runtime writes it at registration and the heartbeat rewrites it
//! when the abandoned executions change; the watchdog reads who the process is (its pid probe),
//! and `solidq status` reads what it serves and what it abandoned.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::{ProcessId, WorkerGroup};

/// What a process writes about itself when it registers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewProcess {
    /// `Runtime` for a solidq runtime process.
    pub kind: String,
    /// Unique name, e.g. `runtime-host-1234-ab12cd34`.
    pub name: String,
    /// OS pid.
    pub pid: i32,
    /// Host name.
    pub hostname: String,
    /// Who it is and what it serves (see [`ProcessMetadata`]).
    pub metadata: ProcessMetadata,
}

/// A row of `solidq_processes`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessRow {
    /// Row id.
    pub id: ProcessId,
    /// Process kind.
    pub kind: String,
    /// Unique name.
    pub name: String,
    /// OS pid.
    pub pid: i32,
    /// Host name.
    pub hostname: String,
    /// What it wrote about itself (see [`ProcessMetadata`]); empty for a row written by
    /// something else.
    pub metadata: ProcessMetadata,
    /// Last successful heartbeat (UTC).
    pub last_heartbeat_at: NaiveDateTime,
    /// Registration time (UTC).
    pub created_at: NaiveDateTime,
}

/// The `metadata` of a process row. Its JSON form (`boot_id`, `pid_namespace`, `start_time`,
/// `details`, `abandoned`) is read leniently: a key that is missing or of another shape reads as
/// empty, so rows written by older versions or by hand still show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessMetadata {
    /// The boot the process started in (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// Its PID namespace (`/proc/self/ns/pid`), so that a pid is only compared within one.
    pub pid_namespace: String,
    /// When its pid started, in clock ticks since boot: a reused pid has another.
    pub start_time: Option<u64>,
    /// What it serves.
    pub details: ProcessDetails,
    /// The executions it abandoned past their timeout (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abandoned: Option<AbandonedExecutions>,
}

impl ProcessMetadata {
    /// The metadata stored as `text` (the column), empty when it does not read as such.
    pub fn from_json(text: &str) -> ProcessMetadata {
        serde_json::from_str(text).unwrap_or_default()
    }

    /// The column's text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// The executions it abandoned (none, when it wrote none).
    pub fn abandoned(&self) -> AbandonedExecutions {
        self.abandoned.clone().unwrap_or_default()
    }
}

/// What a process serves, as it registered it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessDetails {
    /// Its worker groups.
    pub workers: Vec<WorkerDetails>,
    /// The kinds it has handlers for.
    pub kinds: Vec<String>,
    /// `sqlite` or `postgres`.
    pub backend: String,
}

/// One worker group as a process row shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerDetails {
    /// Its queue patterns, as `SOLIDQ_WORKERS` writes them (`*`, `name`, `prefix*`).
    pub queues: Vec<String>,
    /// How many jobs it holds at once.
    pub concurrency: usize,
}

impl From<&WorkerGroup> for WorkerDetails {
    fn from(group: &WorkerGroup) -> Self {
        WorkerDetails { queues: group.queues.iter().map(ToString::to_string).collect(), concurrency: group.concurrency }
    }
}

/// One execution that ran past its kind's timeout and whose handler had not returned when
/// its process last wrote its row (see [`Job::TIMEOUT`](crate::Job::TIMEOUT)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbandonedExecution {
    /// The job's id.
    pub job_id: i64,
    /// The job's kind.
    pub kind: String,
    /// The attempt that timed out.
    pub attempt: i32,
    /// The kind's timeout, in seconds.
    pub timeout_secs: f64,
    /// When it timed out (UTC).
    pub timed_out_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The abandoned executions of one process, as its heartbeat writes them into the
/// `abandoned` key of its row's metadata: a count, and the first [`AbandonedExecutions::LISTED`]
/// executions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AbandonedExecutions {
    /// How many there are.
    pub count: usize,
    /// The first [`AbandonedExecutions::LISTED`] of them, oldest claim first.
    pub executions: Vec<AbandonedExecution>,
}

impl AbandonedExecutions {
    /// At most this many executions are listed in a process row.
    pub const LISTED: usize = 50;

    /// The count of `executions`, and the first [`AbandonedExecutions::LISTED`].
    pub fn new(mut executions: Vec<AbandonedExecution>) -> Self {
        let count = executions.len();
        executions.truncate(Self::LISTED);
        AbandonedExecutions { count, executions }
    }

    /// The job ids listed.
    pub fn job_ids(&self) -> Vec<i64> {
        self.executions.iter().map(|e| e.job_id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_keeps_its_json_form_and_reads_leniently() {
        let metadata = ProcessMetadata {
            boot_id: "b".into(),
            pid_namespace: "pid:[4026531836]".into(),
            start_time: Some(42),
            details: ProcessDetails {
                workers: vec![WorkerDetails { queues: vec!["*".into()], concurrency: 3 }],
                kinds: vec!["k".into()],
                backend: "sqlite".into(),
            },
            abandoned: None,
        };
        let json: serde_json::Value = serde_json::from_str(&metadata.to_json()).unwrap();
        assert_eq!(json["details"]["workers"][0]["queues"][0], "*");
        assert_eq!(json["start_time"], 42);
        assert!(json.get("abandoned").is_none());
        assert_eq!(ProcessMetadata::from_json(&metadata.to_json()), metadata);
        assert_eq!(ProcessMetadata::from_json("null"), ProcessMetadata::default());
        assert_eq!(ProcessMetadata::from_json(r#"{"details": {"kinds": ["a"]}, "extra": 1}"#).details.kinds, ["a"]);
    }
}
