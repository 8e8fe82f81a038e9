//! The plain types every layer shares: ids, a job to insert, a claim and its token, a failure
//! record, queue patterns and worker groups, the death policy, process rows and their metadata
//! ([`process`]), job states, the database URL ([`database_url`]), durations ([`duration`]) and
//! the rule for names ([`names`]). This module depends on nothing else in the crate; the store,
//! the lifecycle, the actors, the API and the configuration all build on it.

use std::fmt;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

pub mod database_url;
pub mod duration;
pub mod names;
pub mod process;
pub mod rate_limit;

pub use database_url::DatabaseUrl;
pub(crate) use names::shown_name;
pub use names::{name_problem, queue_name_problem, MAX_NAME_BYTES};
pub use process::{
    AbandonedExecution, AbandonedExecutions, NewProcess, ProcessDetails, ProcessMetadata, ProcessRow, WorkerDetails,
};
pub use rate_limit::RateLimit;

/// Why a text did not parse: what is wrong with it, and the accepted form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// What is wrong, e.g. `is not a duration`.
    pub problem: String,
    /// The accepted form, e.g. `use e.g. 500ms, 10s, 5m`.
    pub expected: String,
}

impl Malformed {
    /// `problem`, with the accepted form.
    pub fn new(problem: impl Into<String>, expected: impl Into<String>) -> Malformed {
        Malformed { problem: problem.into(), expected: expected.into() }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.problem, self.expected)
    }
}

impl std::error::Error for Malformed {}

/// Id of a row in `solidq_jobs`.
pub type JobId = i64;

/// Id of a row in `solidq_processes`.
pub type ProcessId = i64;

/// The latest time a job may be scheduled for, 9999-12-31 23:59:59 UTC. Later times have
/// five-digit years, which SQLite (times as text) would sort before earlier ones; every backend
/// refuses them the same way.
pub fn latest_schedule() -> NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|day| day.and_hms_opt(23, 59, 59))
        .unwrap_or(NaiveDateTime::MAX)
}

/// The earliest time the store compares with, 1000-01-01 00:00:00 UTC: the start of MySQL's
/// `DATETIME` range. A cutoff that would fall before it ("older than a very long time") is
/// clamped to it; no row is older.
pub fn earliest_time() -> NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(1000, 1, 1).and_then(|day| day.and_hms_opt(0, 0, 0)).unwrap_or(NaiveDateTime::MIN)
}

/// A job ready to be inserted: kind, JSON arguments and where/when to run.
///
/// Built from a typed [`Job`](crate::Job) with [`NewJob::from_job`], or from a raw kind and
/// JSON value (the CLI does this) with [`NewJob::from_json`].
///
/// ```
/// let job = solidq::NewJob::from_json("ping", serde_json::json!({"n": 1}), solidq::EnqueueOptions::new()).unwrap();
/// assert_eq!(job.queue, "default");
/// assert!(job.scheduled_at.is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Kind name, selects the handler.
    pub kind: String,
    /// Arguments as a JSON text.
    pub arguments: String,
    /// Queue name.
    pub queue: String,
    /// Lower runs first.
    pub priority: i32,
    /// Executions allowed.
    pub max_attempts: i32,
    /// `None`: ready now; `Some`: held as scheduled until then (UTC), at the latest
    /// [`latest_schedule`].
    pub scheduled_at: Option<NaiveDateTime>,
    /// While a job with this key may still run (scheduled, ready, claimed or blocked), enqueueing
    /// another with the same key inserts nothing and returns the existing job's id.
    pub unique_key: Option<String>,
    /// How many jobs sharing a key may be ready or running at once.
    pub concurrency: Option<ConcurrencyLimit>,
    /// Jobs that must end before this one runs (it waits as [`JobState::Waiting`] until then).
    pub after: Vec<Dependency>,
    /// At most so many starts of jobs with its key per period, across every process.
    pub rate_limit: Option<RateLimit>,
}

/// One job another waits for: see [`EnqueueOptions::after`](crate::EnqueueOptions::after).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dependency {
    /// The job waited for.
    pub job: JobId,
    /// What its failure does to the waiting job.
    pub on_failure: OnDependencyFailure,
}

/// What a prerequisite that fails for good (or is discarded or cancelled) does to the jobs
/// waiting for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDependencyFailure {
    /// The waiting job is cancelled (and so are the jobs waiting for it, in turn). The default.
    #[default]
    Cancel,
    /// The waiting job runs anyway once every prerequisite has ended.
    Run,
}

impl OnDependencyFailure {
    /// The column's text: `cancel` or `run`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnDependencyFailure::Cancel => "cancel",
            OnDependencyFailure::Run => "run",
        }
    }

    /// The policy a column's text names (anything but `run` cancels).
    pub fn parse(text: &str) -> OnDependencyFailure {
        if text == "run" {
            OnDependencyFailure::Run
        } else {
            OnDependencyFailure::Cancel
        }
    }
}

/// Row id of a batch (`solidq_batches.id`).
pub type BatchId = i64;

/// What a job over its concurrency limit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Waits as blocked until a job holding the key ends (the default).
    #[default]
    Block,
    /// Ends at once as discarded.
    Discard,
}

impl OnConflict {
    /// `block` or `discard`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OnConflict::Block => "block",
            OnConflict::Discard => "discard",
        }
    }
}

/// A concurrency limit: at most `limit` jobs with the same `key` are ready or claimed at once;
/// the others wait as blocked (or are discarded) and are let in, highest priority first, as
/// soon as a holder finishes, fails, is retried later, is cancelled or its process is found
/// dead. A holder claimed longer than `duration` ago stops counting: the safety net for a
/// job stuck in a live process, as Solid Queue's semaphore expiry.
///
/// ```
/// use std::time::Duration;
/// use solidq::model::ConcurrencyLimit;
/// let limit = ConcurrencyLimit::new("account:42", 2).duration(Duration::from_secs(600));
/// assert_eq!(limit.limit, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyLimit {
    /// Jobs with equal keys share the limit (derive it from the arguments).
    pub key: String,
    /// Jobs admitted at once, at least 1.
    pub limit: i32,
    /// How long a holder counts after it was claimed.
    pub duration: std::time::Duration,
    /// What a job over the limit does.
    pub on_conflict: OnConflict,
}

/// Default [`ConcurrencyLimit::duration`]: longer than any job should run.
pub const DEFAULT_CONCURRENCY_DURATION: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl ConcurrencyLimit {
    /// `limit` jobs with `key` at once, blocking the others, for [`DEFAULT_CONCURRENCY_DURATION`].
    pub fn new(key: impl Into<String>, limit: i32) -> Self {
        ConcurrencyLimit {
            key: key.into(),
            limit,
            duration: DEFAULT_CONCURRENCY_DURATION,
            on_conflict: OnConflict::Block,
        }
    }

    /// How long a holder counts after it was claimed.
    pub fn duration(mut self, duration: std::time::Duration) -> Self {
        self.duration = duration;
        self
    }

    /// Discard jobs over the limit instead of blocking them.
    pub fn discard_on_conflict(mut self) -> Self {
        self.on_conflict = OnConflict::Discard;
        self
    }
}

/// What an enqueue did with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase", tag = "result", content = "id")]
pub enum Enqueued {
    /// Inserted as a new job with this id.
    New(JobId),
    /// Not inserted: the job with this id holds the same unique key.
    Existing(JobId),
}

impl Enqueued {
    /// The id of the new job, or of the existing one.
    pub fn id(self) -> JobId {
        match self {
            Enqueued::New(id) | Enqueued::Existing(id) => id,
        }
    }

    /// Whether a new job was inserted.
    pub fn is_new(self) -> bool {
        matches!(self, Enqueued::New(_))
    }
}

impl NewJob {
    /// Whether the job has a unique key, a concurrency limit, prerequisites or a rate limit
    /// (enqueued one at a time).
    pub fn has_options(&self) -> bool {
        self.unique_key.is_some() || self.concurrency.is_some() || !self.after.is_empty() || self.rate_limit.is_some()
    }

    /// What is wrong with this job, if anything: a kind, queue name, unique key or
    /// concurrency key that breaks the rules of names ([`name_problem`],
    /// [`queue_name_problem`]), fewer than one attempt, or a time after [`latest_schedule`].
    /// The store refuses such jobs on every backend.
    pub fn problem(&self) -> Option<String> {
        if let Some(problem) = name_problem("kind", &self.kind).or_else(|| queue_name_problem(&self.queue)) {
            return Some(problem);
        }
        if self.max_attempts < 1 {
            return Some(format!("max attempts must be at least 1, got {}", self.max_attempts));
        }
        if let Some(problem) = self.unique_key.as_deref().and_then(|key| name_problem("unique key", key)) {
            return Some(problem);
        }
        if let Some(limit) = &self.concurrency {
            if let Some(problem) = name_problem("concurrency key", &limit.key) {
                return Some(problem);
            }
            if limit.limit < 1 {
                return Some(format!("the concurrency limit must be at least 1, got {}", limit.limit));
            }
            if limit.duration.is_zero() || limit.duration.as_millis() > i64::MAX as u128 {
                return Some("the concurrency duration must be more than 0 and fit in i64 milliseconds".into());
            }
        }
        if let Some(problem) = self.rate_limit.as_ref().and_then(RateLimit::problem) {
            return Some(problem);
        }
        match self.scheduled_at {
            Some(at) if at > latest_schedule() => Some(format!(
                "it would run at {at} UTC, later than {} UTC, the latest time solidq stores",
                latest_schedule()
            )),
            _ => None,
        }
    }
}

/// One entry of a worker's queue list, as configured by `SOLIDQ_WORKERS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QueuePattern {
    /// `*`: every queue.
    All,
    /// A queue by its exact name.
    Exact(String),
    /// `name*`: every queue whose name starts with the prefix.
    Prefix(String),
}

impl fmt::Display for QueuePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueuePattern::All => f.write_str("*"),
            QueuePattern::Exact(name) => f.write_str(name),
            QueuePattern::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

impl QueuePattern {
    /// Parses `*`, `prefix*` or an exact name.
    ///
    /// ```
    /// use solidq::model::QueuePattern;
    /// assert_eq!(QueuePattern::parse("*"), QueuePattern::All);
    /// assert_eq!(QueuePattern::parse("reports*"), QueuePattern::Prefix("reports".into()));
    /// assert_eq!(QueuePattern::parse("default"), QueuePattern::Exact("default".into()));
    /// ```
    pub fn parse(text: &str) -> QueuePattern {
        match text.strip_suffix('*') {
            Some("") => QueuePattern::All,
            Some(prefix) => QueuePattern::Prefix(prefix.to_string()),
            None => QueuePattern::Exact(text.to_string()),
        }
    }

    /// Whether `queue` matches this pattern.
    pub fn matches(&self, queue: &str) -> bool {
        match self {
            QueuePattern::All => true,
            QueuePattern::Exact(name) => name == queue,
            QueuePattern::Prefix(prefix) => queue.starts_with(prefix.as_str()),
        }
    }
}

/// One worker group: the queues it serves, in order, and how many jobs it runs at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerGroup {
    /// Queues in claim order; `*` entries match all or by prefix.
    pub queues: Vec<QueuePattern>,
    /// Jobs run concurrently by this group.
    pub concurrency: usize,
}

/// Proof of a claim: the claimed execution's id (never reused) and its job.
///
/// A transition written with a token whose claim row is gone (the process was found dead and
/// the job handed back, perhaps claimed again elsewhere) changes nothing: the token is fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ClaimToken {
    /// `solidq_jobs.id`.
    pub job_id: JobId,
    /// `solidq_claimed_executions.id`, unique over the table's life.
    pub claim_id: i64,
}

/// A job claimed for a process, with everything needed to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    /// Fencing token of this claim.
    pub token: ClaimToken,
    /// Kind name.
    pub kind: String,
    /// JSON text of the arguments.
    pub arguments: String,
    /// Queue it was claimed from.
    pub queue: String,
    /// Priority (lower first).
    pub priority: i32,
    /// This execution's attempt number: executions started so far, this one included.
    pub attempts: i32,
    /// Executions allowed.
    pub max_attempts: i32,
    /// When the job became ready (its ready row was written: enqueued, due and dispatched,
    /// retried or released), for the queue-wait metric.
    pub ready_at: NaiveDateTime,
    /// The job's rate-limit key, if it has a [`RateLimit`]: the store checks the limit before
    /// it hands the claim out.
    pub rate_limit_key: Option<String>,
    /// For a job admitted by its rate limit: the latest time its handler may start. Its start
    /// was counted when it was claimed; a process that stalls past this (a loaded host) hands
    /// the job back instead of starting it late, where it could crowd the next window.
    pub rate_limit_deadline: Option<NaiveDateTime>,
    /// For a job admitted by its rate limit: the start counted for it. It may be a few ms
    /// ahead (the window's place frees then): the worker holds the job until that time.
    pub rate_limit_start: Option<NaiveDateTime>,
}

/// What kind of ending a [`FailureRecord`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// The handler returned an error.
    #[serde(alias = "JobError")]
    Error,
    /// The handler panicked.
    Panic,
    /// The job's arguments do not deserialize into its type.
    BadArguments,
    /// The process holding the job died (or was judged dead).
    ProcessDied,
    /// The handler actor stopped while the job was with it.
    Interrupted,
    /// The handler ran past its kind's timeout.
    Timeout,
    /// The handler asked not to retry: the job is kept as discarded.
    Discarded,
    /// A job it depended on failed for good, was discarded or cancelled: it was cancelled
    /// without running (see [`OnDependencyFailure`]).
    DependencyFailed,
    /// Recorded by another version, or by hand.
    #[serde(other)]
    Other,
}

impl FailureKind {
    /// The name stored in `solidq_failed_executions.error_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Error => "Error",
            FailureKind::Panic => "Panic",
            FailureKind::BadArguments => "BadArguments",
            FailureKind::ProcessDied => "ProcessDied",
            FailureKind::Interrupted => "Interrupted",
            FailureKind::Timeout => "Timeout",
            FailureKind::Discarded => "Discarded",
            FailureKind::DependencyFailed => "DependencyFailed",
            FailureKind::Other => "Other",
        }
    }

    /// The kind named `name`; names it does not know (another version's) are `Other`.
    pub fn parse(name: &str) -> FailureKind {
        serde_json::from_value(serde_json::Value::String(name.to_string())).unwrap_or(FailureKind::Other)
    }
}

/// Why a job failed or is retried, as stored with it (`last_error`, and the failed execution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// What kind of ending.
    #[serde(alias = "class")]
    pub kind: FailureKind,
    /// What happened, in words: the handler's error, the panic message, the deserialization
    /// error, the process that died.
    pub message: String,
    /// Where a panic happened (file and line); nothing else goes here.
    #[serde(default)]
    pub backtrace: Option<String>,
    /// For a process death: why the process was judged dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl FailureRecord {
    /// A record of `kind` with `message` and nothing more.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        FailureRecord { kind, message: message.into(), backtrace: None, cause: None }
    }

    /// The record as the JSON text stored in `last_error` and `solidq_failed_executions.error`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| {
            serde_json::json!({ "kind": "Other", "message": format!("unserializable failure record: {err}") })
                .to_string()
        })
    }

    /// Reads a record from its stored JSON text; text that is not one (written by hand, or by
    /// another program) comes back whole as the message of an `Other` record.
    pub fn from_json(text: &str) -> FailureRecord {
        serde_json::from_str(text).unwrap_or_else(|_| FailureRecord::new(FailureKind::Other, text))
    }
}

/// What to do with the claims of a process found dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum DeathPolicy {
    /// Back to ready (the attempt stays counted); failed once max attempts are reached.
    #[default]
    Retry,
    /// Straight to failed, as Solid Queue does.
    Fail,
}

/// Where a job is in its life: which execution table holds it (as in Solid Queue), or none
/// with `finished_at` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Ready,
    /// Waiting for its time (scheduled, or a retry after its backoff).
    Scheduled,
    /// Held by a process.
    Claimed,
    /// Waiting for a job holding its concurrency key to end.
    Blocked,
    /// Waiting for the jobs it depends on to end (a workflow step).
    Waiting,
    /// Failed for good (until retried by hand).
    Failed,
    /// Done.
    Finished,
    /// Ended without finishing: the handler or an operator discarded it, or it was over its
    /// concurrency limit with `discard` on conflict.
    Discarded,
    /// Ended by an operator's cancel.
    Cancelled,
}

impl JobState {
    /// The lowercase name used in status output and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Ready => "ready",
            JobState::Scheduled => "scheduled",
            JobState::Claimed => "claimed",
            JobState::Blocked => "blocked",
            JobState::Waiting => "waiting",
            JobState::Failed => "failed",
            JobState::Finished => "finished",
            JobState::Discarded => "discarded",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Every state, in the order of a job's life.
    pub const ALL: [JobState; 9] = [
        JobState::Waiting,
        JobState::Scheduled,
        JobState::Blocked,
        JobState::Ready,
        JobState::Claimed,
        JobState::Failed,
        JobState::Finished,
        JobState::Discarded,
        JobState::Cancelled,
    ];

    /// The state named `name` (as [`JobState::as_str`] prints it).
    pub fn parse(name: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|state| state.as_str() == name)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for JobState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_records_are_typed_and_read_what_earlier_versions_wrote() {
        let died = FailureRecord {
            kind: FailureKind::ProcessDied,
            message: "process 7 died".into(),
            backtrace: None,
            cause: Some("pid 42 is gone".into()),
        };
        assert_eq!(FailureRecord::from_json(&died.to_json()), died);
        let older = r#"{"class":"JobError","message":"smtp timeout","backtrace":null}"#;
        assert_eq!(FailureRecord::from_json(older), FailureRecord::new(FailureKind::Error, "smtp timeout"));
        let unknown = r#"{"class":"UnknownKind","message":"no handler"}"#;
        assert_eq!(FailureRecord::from_json(unknown).kind, FailureKind::Other);
        assert_eq!(FailureRecord::from_json("not json"), FailureRecord::new(FailureKind::Other, "not json"));
    }
}
