//! Logging: a slog logger writing to stderr through an async drain, as human-readable lines
//! (`SOLIDQ_LOG_FORMAT=term`) or one JSON object per line (`json`), filtered at `SOLIDQ_LOG`.
//!
//! [`init`] also installs the logger as the slog-scope global logger and routes the `log`
//! crate (used by actix, r2d2 and diesel_migrations) into it, so their messages come out in
//! the same format and at the same level.
//!
//! ```no_run
//! let config = solidq::Config::from_env().expect("valid SOLIDQ_* variables");
//! let (log, _guard) = solidq::logging::init(&config);
//! slog::info!(log, "starting"; "database" => %config.database_url);
//! // Keep `_guard` alive until exit: dropping it flushes what is still queued.
//! ```

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use slog::{Drain, Logger, Never};

use crate::config::{Config, LogFormat};

/// Records queued for the logging thread before new ones are dropped.
const CHANNEL_SIZE: usize = 4096;

/// Keeps logging alive: the async drain's thread and, after [`init`], the global logger.
///
/// Dropping it flushes every record still queued and, if the global logger installed by the
/// matching [`init`] is still the current one, replaces it by a logger that discards (records
/// logged later through `log` or `slog-scope` are dropped rather than causing a panic).
#[must_use = "logging stops when the guard is dropped"]
pub struct LoggingGuard {
    /// Which [`init`] installed the global logger, if any.
    generation: Option<u64>,
    scope: Option<slog_scope::GlobalLoggerGuard>,
    async_guard: Option<slog_async::AsyncGuard>,
}

impl std::fmt::Debug for LoggingGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggingGuard").field("global", &self.generation.is_some()).finish_non_exhaustive()
    }
}

/// The number of the latest [`init`]; 0 when none is installed.
static CURRENT_GLOBAL: Mutex<u64> = Mutex::new(0);
/// Source of [`init`] numbers.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

impl Drop for LoggingGuard {
    fn drop(&mut self) {
        if let Some(scope) = self.scope.take() {
            // slog-scope's own reset installs a logger that panics on every record; a late
            // message from another thread must not crash the process, so reset to Discard.
            scope.cancel_reset();
            let mut current = CURRENT_GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
            if Some(*current) == self.generation {
                slog_scope::set_global_logger(Logger::root(slog::Discard, slog::o!())).cancel_reset();
                *current = 0;
            }
        }
        // Flushes the queue and joins the logging thread.
        drop(self.async_guard.take());
    }
}

/// Where log lines go.
enum Sink {
    /// Standard error, coloured when it is a terminal.
    Stderr,
    /// Any writer (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Writer(Box<dyn io::Write + Send>),
}

/// Builds a logger writing to stderr in `format`, dropping records below `level`.
///
/// The records are formatted and written on a separate thread (slog-async); keep the returned
/// guard alive while logging and drop it at exit to flush. Unlike [`init`], this installs
/// nothing globally.
///
/// `term` lines carry a UTC timestamp, the level, the message and its key-value pairs; `json`
/// objects carry `ts`, `level`, `msg` and the pairs.
///
/// ```
/// use solidq::config::LogFormat;
///
/// let (log, guard) = solidq::logging::logger(slog::Level::Warning, LogFormat::Json);
/// slog::warn!(log, "disk almost full"; "free_mb" => 12);
/// slog::info!(log, "not shown: below the level");
/// drop(guard); // flush
/// ```
///
/// Note that slog removes `trace` records at compile time, and `debug` ones too in release
/// builds, unless its `max_level_*` features say otherwise.
pub fn logger(level: slog::Level, format: LogFormat) -> (Logger, LoggingGuard) {
    build(level, format, Sink::Stderr)
}

fn build(level: slog::Level, format: LogFormat, sink: Sink) -> (Logger, LoggingGuard) {
    let formatted: Box<dyn Drain<Ok = (), Err = Never> + Send> = match (format, sink) {
        (LogFormat::Term, Sink::Stderr) => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            Box::new(OneLine(term_format(decorator).ignore_res()))
        }
        (LogFormat::Term, Sink::Writer(writer)) => {
            let decorator = slog_term::PlainDecorator::new(writer);
            Box::new(OneLine(term_format(decorator).ignore_res()))
        }
        (LogFormat::Json, Sink::Stderr) => Box::new(json_format(io::stderr()).ignore_res()),
        (LogFormat::Json, Sink::Writer(writer)) => Box::new(json_format(writer).ignore_res()),
    };
    let (async_drain, async_guard) = slog_async::Async::new(formatted)
        .chan_size(CHANNEL_SIZE)
        .thread_name("solidq-log".to_string())
        .build_with_guard();
    // Filter before the channel so dropped levels cost nothing; ignore send errors (a full
    // queue, or a record logged after the guard was dropped) instead of panicking.
    let drain = slog::LevelFilter::new(async_drain.ignore_res(), level).ignore_res();
    let logger = Logger::root(drain, slog::o!());
    let guard = LoggingGuard { generation: None, scope: None, async_guard: Some(async_guard) };
    (logger, guard)
}

/// Keeps a record on one line in the term format: line breaks in the message or in a value
/// (a PostgreSQL error carries several) are written as `\n`, so the keys that follow stay on
/// the record's line. JSON escapes them by itself.
struct OneLine<D>(D);

/// The record's key-value pairs (and the logger's), rendered and with line breaks escaped.
#[derive(Default)]
struct EscapedPairs(Vec<(slog::Key, String)>);

fn escape_breaks(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        std::borrow::Cow::Owned(text.replace("\r\n", "\\n").replace('\n', "\\n").replace('\r', "\\r"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

impl slog::Serializer for EscapedPairs {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        self.0.push((key, escape_breaks(&val.to_string()).into_owned()));
        Ok(())
    }
}

impl slog::KV for EscapedPairs {
    fn serialize(&self, _: &slog::Record, serializer: &mut dyn slog::Serializer) -> slog::Result {
        for (key, value) in &self.0 {
            serializer.emit_str(key, value)?;
        }
        Ok(())
    }
}

impl<D: Drain<Ok = (), Err = Never>> Drain for OneLine<D> {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), Never> {
        let mut pairs = EscapedPairs::default();
        // In the order the term format prints them: the record's pairs, then the logger's.
        let rendered = slog::KV::serialize(&record.kv(), record, &mut pairs)
            .and_then(|()| slog::KV::serialize(values, record, &mut pairs));
        if rendered.is_err() {
            return self.0.log(record, values);
        }
        let message = record.msg().to_string();
        let message = escape_breaks(&message);
        let info = slog::RecordStatic { location: record.location(), level: record.level(), tag: record.tag() };
        let kv = slog::BorrowedKV(&pairs);
        self.0.log(&slog::Record::new(&info, &format_args!("{message}"), kv), &slog::OwnedKVList::from(slog::o!()))
    }
}

fn term_format<D: slog_term::Decorator>(decorator: D) -> slog_term::FullFormat<D> {
    slog_term::FullFormat::new(decorator)
        .use_custom_timestamp(|out: &mut dyn io::Write| {
            write!(out, "{}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"))
        })
        .build()
}

fn json_format<W: io::Write>(writer: W) -> slog_json::Json<W> {
    slog_json::Json::new(writer).add_default_keys().build()
}

/// The `log` crate's filter matching a slog level.
fn log_filter(level: slog::Level) -> log::LevelFilter {
    match level {
        slog::Level::Critical | slog::Level::Error => log::LevelFilter::Error,
        slog::Level::Warning => log::LevelFilter::Warn,
        slog::Level::Info => log::LevelFilter::Info,
        slog::Level::Debug => log::LevelFilter::Debug,
        slog::Level::Trace => log::LevelFilter::Trace,
    }
}

/// Sets up logging for a process from `SOLIDQ_LOG` and `SOLIDQ_LOG_FORMAT`.
///
/// Builds the [`logger`], installs it as the slog-scope global logger and routes records of
/// the `log` crate (actix, r2d2, …) into it at the same level. Returns the logger and a guard
/// to keep until exit.
///
/// Calling it again (tests, embedding) does not panic: the newer logger replaces the global
/// one, and the `log` bridge, installed once per process, follows it.
///
/// ```
/// let (log, guard) = solidq::logging::init(&solidq::Config::default());
/// slog::info!(log, "ready");
/// log::info!("from the log crate, same output");
/// drop(guard);
/// ```
pub fn init(config: &Config) -> (Logger, LoggingGuard) {
    let (logger, guard) = logger(config.log_level, config.log_format);
    install(logger, guard, config.log_level)
}

fn install(logger: Logger, mut guard: LoggingGuard, level: slog::Level) -> (Logger, LoggingGuard) {
    let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
    {
        let mut current = CURRENT_GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
        guard.scope = Some(slog_scope::set_global_logger(logger.clone()));
        guard.generation = Some(generation);
        *current = generation;
    }
    // Fails after the first call in a process: the bridge already forwards to the (new)
    // global logger, so only the level needs updating.
    let _ = slog_stdlog::init_with_level(log::Level::Trace);
    log::set_max_level(log_filter(level));
    (logger, guard)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn json_lines_carry_level_message_and_pairs_and_respect_the_level() {
        let buffer = Buffer::default();
        let (log, guard) = build(slog::Level::Info, LogFormat::Json, Sink::Writer(Box::new(buffer.clone())));
        slog::info!(log, "job finished"; "job_id" => 42);
        slog::debug!(log, "too detailed");
        drop(log);
        drop(guard);
        let text = buffer.text();
        let lines: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["msg"], "job finished");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["job_id"], 42);
        assert!(lines[0]["ts"].is_string());
    }

    #[test]
    fn term_lines_are_readable() {
        let buffer = Buffer::default();
        let (log, guard) = build(slog::Level::Warning, LogFormat::Term, Sink::Writer(Box::new(buffer.clone())));
        slog::warn!(log, "heartbeat late"; "process" => "w1");
        slog::info!(log, "hidden");
        drop(guard);
        let text = buffer.text();
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains("heartbeat late"), "{text}");
        assert!(text.contains("process: w1"), "{text}");
        assert!(!text.contains("hidden"), "{text}");
        // Logging after the guard is gone is dropped quietly, not a panic.
        slog::warn!(log, "too late");
    }

    /// The only test touching the process-wide loggers (slog-scope and `log`).
    #[test]
    fn init_bridges_the_log_crate_and_may_run_twice() {
        let first = Buffer::default();
        let (_log, guard) = build(slog::Level::Info, LogFormat::Json, Sink::Writer(Box::new(first.clone())));
        let (_log, first_guard) = install(_log, guard, slog::Level::Info);
        log::info!("from the log crate");
        log::debug!("below the level");

        let second = Buffer::default();
        let (log2, guard2) = build(slog::Level::Debug, LogFormat::Json, Sink::Writer(Box::new(second.clone())));
        let (_log2, second_guard) = install(log2, guard2, slog::Level::Debug);
        // Dropping the older guard must not uninstall the newer logger.
        drop(first_guard);
        log::info!("to the second logger");
        slog_scope::info!("through slog-scope");
        drop(second_guard);
        // No logger installed any more: records vanish instead of panicking.
        log::error!("after everything");
        slog_scope::error!("after everything");

        let first = first.text();
        assert!(first.contains("from the log crate"), "{first}");
        assert!(!first.contains("below the level"), "{first}");
        assert!(!first.contains("to the second logger"), "{first}");
        let second = second.text();
        assert!(second.contains("to the second logger"), "{second}");
        assert!(second.contains("through slog-scope"), "{second}");
        assert!(!second.contains("after everything"), "{second}");
    }

    #[test]
    fn a_record_with_line_breaks_stays_on_one_line_in_both_formats() {
        let error = "connection to server failed\nserver closed the connection unexpectedly\r\n\tbefore or while";
        for format in [LogFormat::Term, LogFormat::Json] {
            let buffer = Buffer::default();
            let (log, guard) = build(slog::Level::Info, format, Sink::Writer(Box::new(buffer.clone())));
            let log = log.new(slog::o!("actor" => "worker"));
            slog::error!(log, "claim failed\nbadly"; "error" => error, "failures" => 1);
            drop(log);
            drop(guard);
            let text = buffer.text();
            assert_eq!(text.lines().count(), 1, "{format:?}: {text}");
            assert!(text.contains("actor"), "{text}");
            if format == LogFormat::Term {
                assert!(text.contains("claim failed\\nbadly"), "{text}");
                assert!(text.contains("failed\\nserver closed the connection unexpectedly\\n\tbefore"), "{text}");
                assert!(text.contains("failures: 1") && text.contains("actor: worker"), "{text}");
            }
        }
    }

    #[test]
    fn real_stderr_loggers_build_in_both_formats() {
        for format in [LogFormat::Term, LogFormat::Json] {
            let (log, guard) = logger(slog::Level::Critical, format);
            slog::info!(log, "filtered out");
            drop(guard);
        }
    }
}
