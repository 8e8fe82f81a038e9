//! A log drain that keeps every record, for tests that check what the runtime logged.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct LogLine {
    pub at: Instant,
    pub level: slog::Level,
    pub text: String,
}

/// Keeps every record (message and key-values) with its time; echoes to stderr when
/// `SOLIDQ_TEST_LOG` is set.
#[derive(Clone)]
pub struct LogRecorder {
    lines: Arc<Mutex<Vec<LogLine>>>,
    echo: bool,
}

impl LogRecorder {
    pub fn new() -> Self {
        LogRecorder { lines: Arc::default(), echo: std::env::var_os("SOLIDQ_TEST_LOG").is_some() }
    }

    pub fn logger(&self) -> slog::Logger {
        slog::Logger::root(self.clone(), slog::o!())
    }

    /// Error-level (and critical) lines logged in `[from, to)`.
    pub fn errors_between(&self, from: Instant, to: Instant) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.level.is_at_least(slog::Level::Error) && l.at >= from && l.at < to)
            .map(|l| l.text.clone())
            .collect()
    }

    /// When a line containing `needle` was first logged at or after `from`.
    pub fn first(&self, needle: &str, from: Instant) -> Option<Instant> {
        self.lines.lock().unwrap().iter().find(|l| l.at >= from && l.text.contains(needle)).map(|l| l.at)
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.text.contains(needle)).count()
    }
}

struct KvText<'a>(&'a mut String);

impl slog::Serializer for KvText<'_> {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl slog::Drain for LogRecorder {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let mut text = record.msg().to_string();
        let _ = slog::KV::serialize(&record.kv(), record, &mut KvText(&mut text));
        let _ = slog::KV::serialize(values, record, &mut KvText(&mut text));
        if self.echo {
            eprintln!("{} {text}", record.level().as_short_str());
        }
        let line = LogLine { at: Instant::now(), level: record.level(), text };
        self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(line);
        Ok(())
    }
}
