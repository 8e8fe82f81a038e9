//! Why a recurring task, its schedule, its time zone or a task file is not usable.

/// How to write a schedule, shown in error messages.
pub const SCHEDULE_FORM: &str =
    "use a cron expression of 5 fields (minute hour day month weekday, e.g. \"30 2 * * *\") \
     or 6 (with a second first), or every <n>s|m|h|d (e.g. \"every 30s\")";

/// How to write a time zone, shown in error messages.
pub const TIME_ZONE_FORM: &str = "use an IANA time zone name, e.g. UTC, Europe/Berlin or America/New_York";

/// Why a recurring task, its schedule, its time zone or a task file is not usable. The text
/// names the task, the value and the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurringError {
    /// The schedule does not parse.
    #[error("schedule {schedule:?} {problem} ({SCHEDULE_FORM})")]
    Schedule {
        /// The schedule as written.
        schedule: String,
        /// What is wrong.
        problem: String,
    },
    /// The time zone is unknown.
    #[error("time zone {0:?} is not an IANA time zone name ({TIME_ZONE_FORM})")]
    TimeZone(String),
    /// Some other field is wrong (empty key or kind, bad queue name).
    #[error("{0}")]
    Invalid(String),
    /// A task of a file or of the store: which one, and what is wrong with it.
    #[error("recurring task {key:?}: {source}")]
    Task {
        /// The task's key.
        key: String,
        /// What is wrong.
        #[source]
        source: Box<RecurringError>,
    },
    /// A task file could not be read or parsed.
    #[error("recurring task file {path}: {problem}")]
    File {
        /// The file's path.
        path: String,
        /// What is wrong (I/O error, syntax error, unknown field).
        problem: String,
    },
}

impl RecurringError {
    pub(crate) fn task(key: &str, source: RecurringError) -> RecurringError {
        RecurringError::Task { key: key.to_string(), source: Box::new(source) }
    }
}
