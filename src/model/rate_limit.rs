//! Global rate limits: at most `limit` starts of jobs sharing a key in any `period`, across
//! every process (see [`RateLimit`] and the README's "Rate limits").

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::duration::{format_duration, parse_duration_detailed};
use super::names::name_problem_within;
use super::{Malformed, MAX_NAME_BYTES};

/// How to write a rate limit, shown in error messages.
pub const RATE_LIMIT_FORM: &str = "use KEY:N/PERIOD, e.g. email:100/1m or api:50/1s";

/// The longest rate-limit key, in bytes: the store locks `rate:<key>`, a name of at most
/// [`MAX_NAME_BYTES`] bytes.
pub const MAX_RATE_KEY_BYTES: usize = MAX_NAME_BYTES - 5;

/// A global rate limit: at most `limit` jobs with the same `key` start in any `period`, counted
/// over every process that shares the database (e.g. 100 emails per minute for a provider).
///
/// Jobs over the limit are not run and not polled for: they wait as scheduled until the
/// sliding window lets them start (see the README's "Rate limits" for the algorithm and its
/// accuracy). The limit is stored with each job, so jobs sharing a key should share the limit;
/// where they differ, the jobs of a key claimed together are checked against the strictest
/// limit among them (the smallest count and the longest period).
///
/// ```
/// use std::time::Duration;
/// use solidq::model::RateLimit;
/// let limit = RateLimit::per_minute("email", 100);
/// assert_eq!(limit.to_string(), "email:100/1m");
/// assert_eq!(RateLimit::parse("email:100/1m"), Ok(limit));
/// assert_eq!(RateLimit::parse("api:50/1s").unwrap().period(), Duration::from_secs(1));
/// assert!(RateLimit::parse("api:0/1s").unwrap_err().problem.contains("at least 1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimit {
    key: String,
    limit: u32,
    period: Duration,
}

impl RateLimit {
    /// At most `limit` starts of jobs with `key` in any `period` (kept to whole
    /// milliseconds). Checked when a job is built or enqueued (see [`RateLimit::problem`]).
    pub fn new(key: impl Into<String>, limit: u32, period: Duration) -> RateLimit {
        let period = Duration::from_millis(u64::try_from(period.as_millis()).unwrap_or(u64::MAX));
        RateLimit { key: key.into(), limit, period }
    }

    /// At most `limit` starts per second.
    pub fn per_second(key: impl Into<String>, limit: u32) -> RateLimit {
        RateLimit::new(key, limit, Duration::from_secs(1))
    }

    /// At most `limit` starts per minute.
    pub fn per_minute(key: impl Into<String>, limit: u32) -> RateLimit {
        RateLimit::new(key, limit, Duration::from_secs(60))
    }

    /// Parses `KEY:N/PERIOD` (`email:100/1m`, `api:50/1s`, `report:5/1h30m`); the period is a
    /// duration as [`parse_duration`](super::duration::parse_duration) reads it. The key may
    /// contain `:` (the last one separates it). The error names the problem.
    pub fn parse(text: &str) -> Result<RateLimit, Malformed> {
        let text = text.trim();
        let (key, rest) = text.rsplit_once(':').ok_or_else(|| {
            Malformed::new(format!("{text:?} has no ':' between the key and N/PERIOD"), RATE_LIMIT_FORM)
        })?;
        let (count, period) = rest
            .split_once('/')
            .ok_or_else(|| Malformed::new(format!("{rest:?} has no '/' between N and the period"), RATE_LIMIT_FORM))?;
        let limit: u32 = count
            .trim()
            .parse()
            .map_err(|_| Malformed::new(format!("the limit {count:?} is not a whole number"), RATE_LIMIT_FORM))?;
        let period = parse_duration_detailed(period)
            .map_err(|err| Malformed::new(format!("the period {period:?} {}", err.problem), err.expected))?;
        let parsed = RateLimit::new(key, limit, period);
        match parsed.problem() {
            Some(problem) => Err(Malformed::new(problem, RATE_LIMIT_FORM)),
            None => Ok(parsed),
        }
    }

    /// What is wrong with this limit, if anything: an empty or malformed key (the rules of
    /// names, at most [`MAX_RATE_KEY_BYTES`] bytes), a limit of 0, or a period under 1 ms or
    /// too long to store.
    pub fn problem(&self) -> Option<String> {
        if let Some(problem) = name_problem_within("rate-limit key", &self.key, MAX_RATE_KEY_BYTES) {
            return Some(problem);
        }
        if self.limit == 0 {
            return Some("the rate limit must be at least 1 start per period, got 0".into());
        }
        if self.period.as_millis() == 0 {
            return Some("the rate-limit period must be at least 1ms, got 0".into());
        }
        if self.period.as_millis() > i64::MAX as u128 / 4 {
            return Some("the rate-limit period is too long to store".into());
        }
        None
    }

    /// Jobs with equal keys share the limit.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Starts allowed per period.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The period (whole milliseconds).
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The period in milliseconds, as stored.
    pub fn period_ms(&self) -> i64 {
        i64::try_from(self.period.as_millis()).unwrap_or(i64::MAX)
    }

    /// A limit as stored with a job (key, limit, period in ms); `None` if a column is
    /// missing or out of range.
    pub fn from_columns(key: Option<String>, limit: Option<i32>, period_ms: Option<i64>) -> Option<RateLimit> {
        let (key, limit, period_ms) = (key?, limit?, period_ms?);
        Some(RateLimit::new(key, u32::try_from(limit).ok()?, Duration::from_millis(u64::try_from(period_ms).ok()?)))
    }
}

impl fmt::Display for RateLimit {
    /// `KEY:N/PERIOD`, which [`RateLimit::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}/{}", self.key, self.limit, format_duration(self.period))
    }
}

impl FromStr for RateLimit {
    type Err = Malformed;
    fn from_str(text: &str) -> Result<RateLimit, Malformed> {
        RateLimit::parse(text)
    }
}

/// Serialized as its `KEY:N/PERIOD` text.
impl Serialize for RateLimit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RateLimit, D::Error> {
        let text = String::deserialize(deserializer)?;
        RateLimit::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for text in ["email:100/1m", "api:50/1s", "a:b:3/1h30m", "x:1/250ms", "y:7/1m1s500ms"] {
            let limit = RateLimit::parse(text).unwrap();
            assert_eq!(limit.to_string(), text);
            assert_eq!(RateLimit::parse(&limit.to_string()), Ok(limit.clone()));
            let json = serde_json::to_string(&limit).unwrap();
            assert_eq!(serde_json::from_str::<RateLimit>(&json).unwrap(), limit);
        }
        assert_eq!(RateLimit::parse("k:5/60").unwrap(), RateLimit::per_minute("k", 5));
    }

    #[test]
    fn errors_name_the_problem() {
        let problem = |text: &str| RateLimit::parse(text).unwrap_err().problem;
        assert!(problem("api:0/1s").contains("at least 1 start"), "{}", problem("api:0/1s"));
        assert!(problem("api:5/0s").contains("at least 1ms"));
        assert!(problem(":5/1s").contains("rate-limit key"));
        assert!(problem("api5/1s").contains("no ':'"));
        assert!(problem("api:5").contains("no '/'"));
        assert!(problem("api:x/1s").contains("not a whole number"));
        assert!(problem("api:5/soon").contains("the period \"soon\""));
        assert!(RateLimit::parse("api:-1/1s").is_err());
        let long = RateLimit::new("k".repeat(MAX_RATE_KEY_BYTES + 1), 1, Duration::from_secs(1)).problem().unwrap();
        assert!(long.contains("is 251 bytes long") && long.contains("must be 1 to 250 bytes"), "{long}");
        assert!(problem(":5/1s").contains("must be 1 to 250 bytes"));
        assert!(RateLimit::new("k".repeat(MAX_RATE_KEY_BYTES), 1, Duration::from_secs(1)).problem().is_none());
    }
}
