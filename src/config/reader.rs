//! Reading `SOLIDQ_*` variables: every problem is collected (not just the first), and each
//! names the variable, the value (passwords masked) and the accepted form.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::database_url::redact_url;
use crate::model::duration::{format_duration, parse_duration_detailed};
use crate::model::Malformed;
use crate::recurring::{RecurringError, RecurringTask};

/// What `SOLIDQ_RECURRING` names, shown in error messages.
const RECURRING_FORM: &str = "name a .toml or .json file whose tables are tasks with kind, schedule and optional \
     arguments, queue, priority, time_zone, run_missed";
/// One variable with an unusable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The variable, e.g. `SOLIDQ_POOL_SIZE`.
    pub variable: &'static str,
    /// The value found (passwords in URLs masked), or the default in effect when the problem
    /// is a combination of variables.
    pub value: String,
    /// What is wrong, e.g. `is not a duration`.
    pub problem: String,
    /// The accepted form, e.g. `use e.g. 500ms, 10s, 5m, 2h, 1d or bare seconds`.
    pub expected: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?} {} ({})", self.variable, self.value, self.problem, self.expected)
    }
}

/// Every problem found in the environment, not just the first.
///
/// Displays one problem per line:
///
/// ```
/// let err = solidq::config::Config::from_lookup(|name| match name {
///     "SOLIDQ_HEARTBEAT_INTERVAL" => Some("ten".into()),
///     "SOLIDQ_POOL_SIZE" => Some("abc".into()),
///     _ => None,
/// })
/// .unwrap_err();
/// assert_eq!(err.problems.len(), 2);
/// assert!(err.to_string().contains(
///     r#"SOLIDQ_HEARTBEAT_INTERVAL="ten" is not a duration (use e.g. 500ms, 10s, 5m, 2h, 1d or bare seconds)"#
/// ));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in the order the variables are read.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// Whether some problem concerns `variable`.
    pub fn mentions(&self, variable: &str) -> bool {
        self.problems.iter().any(|p| p.variable == variable)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The same readable text as `Display`: a `main` that returns this error prints it with
/// `Debug`, and a structure dump would hide the variable names.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Reads variables through a lookup function, collecting problems. A variable that does not
/// parse reads as its default, and its problem is recorded.
pub(super) struct Reader<F> {
    pub(super) lookup: F,
    pub(super) problems: Vec<ConfigProblem>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// The parsed value of `variable`: `default` when unset, and also when the value does not
    /// parse (the problem is recorded).
    pub(super) fn read<T>(
        &mut self,
        variable: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, Malformed>,
    ) -> T {
        let Some(raw) = (self.lookup)(variable) else {
            return default;
        };
        let result = if raw.trim().is_empty() {
            Err(Malformed::new("is empty", "unset the variable to use the default"))
        } else {
            parse(raw.trim())
        };
        result.unwrap_or_else(|malformed| {
            self.problems.push(ConfigProblem {
                variable,
                // A URL may carry a password: never echo it.
                value: redact_url(&raw),
                problem: malformed.problem,
                expected: malformed.expected,
            });
            default
        })
    }

    /// A duration within `range`.
    pub(super) fn read_duration(
        &mut self,
        variable: &'static str,
        default: Duration,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Duration {
        self.read(variable, default, |text| {
            let duration = parse_duration_detailed(text)?;
            if !range.contains(&duration) {
                let problem = if duration < *range.start() { "is too short" } else { "is too long" };
                let expected = format!(
                    "use from {} to {}, e.g. {}",
                    format_duration(*range.start()),
                    format_duration(*range.end()),
                    format_duration(default)
                );
                return Err(Malformed::new(problem, expected));
            }
            Ok(duration)
        })
    }

    /// Whether `variable` had a problem.
    pub(super) fn failed(&self, variable: &str) -> bool {
        self.problems.iter().any(|problem| problem.variable == variable)
    }

    /// Whether `variable` is set.
    pub(super) fn is_set(&self, variable: &str) -> bool {
        (self.lookup)(variable).is_some()
    }

    /// How `variable` is written, for messages about combinations: its text, or `default`
    /// formatted when unset.
    pub(super) fn text_of(&self, variable: &str, default: Duration) -> String {
        match (self.lookup)(variable) {
            Some(raw) => raw.trim().to_string(),
            None => format_duration(default),
        }
    }
}

/// Parses a whole number in `range`.
pub(super) fn parse_count<T>(text: &str, range: std::ops::RangeInclusive<T>, example: &str) -> Result<T, Malformed>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    let expected = format!("use a whole number from {} to {}, e.g. {example}", range.start(), range.end());
    let value: T = text.trim().parse().map_err(|_| Malformed::new("is not a whole number", expected.clone()))?;
    if value < *range.start() {
        return Err(Malformed::new(format!("is less than {}", range.start()), expected));
    }
    if value > *range.end() {
        return Err(Malformed::new(format!("is more than {}", range.end()), expected));
    }
    Ok(value)
}

/// Reads the task file `SOLIDQ_RECURRING` names; every problem of the file in one message.
pub(super) fn parse_recurring(text: &str) -> Result<Option<(PathBuf, Vec<RecurringTask>)>, Malformed> {
    let path = PathBuf::from(text);
    match crate::recurring::load_file(&path) {
        Ok(tasks) => Ok(Some((path, tasks))),
        Err(problems) => {
            let problems: Vec<String> = problems
                .iter()
                .map(|problem| match problem {
                    RecurringError::File { problem, .. } => problem.clone(),
                    other => other.to_string(),
                })
                .collect();
            Err(Malformed::new(problems.join("; "), RECURRING_FORM))
        }
    }
}

/// Reads one of the names in `choices` (any case) as its value, or says that the text `is
/// not a <what>` and lists the names.
pub(super) fn parse_choice<T: Copy>(text: &str, what: &str, choices: &[(&str, T)]) -> Result<T, Malformed> {
    let text = text.to_ascii_lowercase();
    if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
        return Ok(*value);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let listed = match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(Malformed::new(format!("is not a {what}"), format!("use {listed}")))
}

pub(super) fn parse_bool(text: &str) -> Result<bool, Malformed> {
    let choices = [("true", true), ("false", false), ("1", true), ("0", false), ("yes", true), ("no", false)];
    parse_choice(text, "boolean", &choices)
}

pub(super) fn parse_level(text: &str) -> Result<slog::Level, Malformed> {
    use slog::Level;
    let choices = [
        ("trace", Level::Trace),
        ("debug", Level::Debug),
        ("info", Level::Info),
        ("warn", Level::Warning),
        ("warning", Level::Warning),
        ("error", Level::Error),
        ("critical", Level::Critical),
        ("crit", Level::Critical),
    ];
    parse_choice(text, "log level", &choices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_choice_is_read_in_any_case_and_a_wrong_one_lists_the_names() {
        let choices = [("term", 1), ("json", 2)];
        assert_eq!(parse_choice("JSON", "log format", &choices).unwrap(), 2);
        assert_eq!(
            parse_choice("xml", "log format", &choices).unwrap_err().to_string(),
            "is not a log format (use term or json)"
        );
        assert_eq!(
            parse_choice("no", "boolean", &[("yes", true)]).unwrap_err().to_string(),
            "is not a boolean (use yes)"
        );
        assert!(parse_bool("Yes").unwrap());
        assert_eq!(parse_level("crit").unwrap(), slog::Level::Critical);
    }
}
