//! The reads behind the dashboard's pages, built to stay fast on tables of millions of rows.
//!
//! Every read here:
//! - runs in a read-only transaction that sees one snapshot and takes no write lock (SQLite: a
//!   deferred transaction, which only ever takes a shared lock; PostgreSQL: `READ ONLY`), with a
//!   statement timeout of [`READ_TIMEOUT`] on PostgreSQL (`SET LOCAL statement_timeout`). SQLite
//!   has no statement timeout reachable through diesel: there every read is bounded by the rows
//!   it may touch instead (the caps and scan budgets below);
//! - counts at most [`COUNT_CAP`] + 1 rows per count: above the cap a count is
//!   [`Count::AtLeast`], or on PostgreSQL for ended jobs the planner's [`Count::Estimated`];
//! - pages lists by keyset on an indexed order (never `OFFSET`), see [`JobQuery`].
//!
//! Roles, one file each: [`overview`] (the overview, queues, processes and stuck jobs pages),
//! [`jobs`] (job lists, one job, failure groups), [`keys`] (concurrency and unique keys,
//! recurring tasks). The actions that go with them are in [`super::bulk`].

use std::fmt;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::connection::DbConnection;
use super::{Store, StoreResult};

pub mod jobs;
pub mod keys;
pub mod overview;

pub use jobs::{
    FailureEntry, FailureGroup, FailureGroupKey, JobCursor, JobDetail, JobPage, JobQuery, Timeline, SCAN_BUDGET,
};
pub use keys::{ConcurrencyKeyRow, RecurringRow, RecurringRunRow, UniqueKeyRow};
pub use overview::{
    Liveness, MinuteTally, OldestReady, Overview, ProcessDetail, ProcessTally, QueueStats, StateCounts, StuckJob,
    StuckReason,
};

/// Rows a count reads at most before it stops and says "at least".
pub const COUNT_CAP: u64 = 10_000;

/// The statement timeout of every dashboard read on PostgreSQL.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A number of rows, exact or not, and how the page should print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Count {
    /// Counted exactly.
    Exact(u64),
    /// Counting stopped at the cap: at least this many.
    AtLeast(u64),
    /// The database's estimate (PostgreSQL's planner statistics), not a count.
    Estimated(u64),
}

impl Count {
    /// The number, whatever its kind.
    pub fn value(self) -> u64 {
        match self {
            Count::Exact(n) | Count::AtLeast(n) | Count::Estimated(n) => n,
        }
    }

    /// Whether it is an exact count.
    pub fn is_exact(self) -> bool {
        matches!(self, Count::Exact(_))
    }

    /// The count of `rows` read with a limit of `cap + 1`: exact up to `cap`, else "at least `cap`".
    pub fn capped(rows: u64, cap: u64) -> Count {
        if rows > cap {
            Count::AtLeast(cap)
        } else {
            Count::Exact(rows)
        }
    }
}

/// `1,234`, `≥ 10,000`, `~1.2M`.
impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Count::Exact(n) => f.write_str(&grouped(n)),
            Count::AtLeast(n) => write!(f, "≥ {}", grouped(n)),
            Count::Estimated(n) => write!(f, "~{}", abbreviated(n)),
        }
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `1234567` as `1.2M`, `12345` as `12.3k`; below a thousand as is.
fn abbreviated(n: u64) -> String {
    // Precision loss is fine: one decimal is printed.
    #[allow(clippy::cast_precision_loss)]
    let value = n as f64;
    if n >= 1_000_000_000 {
        format!("{:.1}G", value / 1e9)
    } else if n >= 1_000_000 {
        format!("{:.1}M", value / 1e6)
    } else if n >= 1_000 {
        format!("{:.1}k", value / 1e3)
    } else {
        n.to_string()
    }
}

/// `cap + 1` as a SQL limit.
pub(crate) fn cap_limit(cap: u64) -> i64 {
    i64::try_from(cap.saturating_add(1)).unwrap_or(i64::MAX)
}

/// Seconds from `then` to `now`, never negative.
pub(crate) fn age_secs(now: NaiveDateTime, then: NaiveDateTime) -> f64 {
    let millis = (now - then).num_milliseconds().max(0);
    // Ages fit easily in an f64's 52 bits of mantissa.
    #[allow(clippy::cast_precision_loss)]
    let secs = millis as f64 / 1000.0;
    secs
}

/// The queue and kind of each of `ids`, by id lookups in chunks. The execution tables that
/// have no queue or kind column (claimed, failed) reach them this way rather than by a join,
/// which PostgreSQL may plan as a hash join over every job row, ended ones included.
pub(crate) fn queue_and_kind_of(
    conn: &mut DbConnection,
    ids: &[i64],
) -> QueryResult<std::collections::HashMap<i64, (String, String)>> {
    use super::schema::solidq_jobs as jobs;
    let mut out = std::collections::HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(5_000) {
        let rows: Vec<(i64, String, String)> = jobs::table
            .filter(jobs::id.eq_any(chunk))
            .select((jobs::id, jobs::queue_name, jobs::class_name))
            .load(conn)?;
        out.extend(rows.into_iter().map(|(id, queue, kind)| (id, (queue, kind))));
    }
    Ok(out)
}

impl Store {
    /// Runs `f` as a dashboard read: a read-only snapshot with the dialect's statement timeout.
    pub(crate) fn bounded_read<T>(
        &self,
        action: &'static str,
        mut f: impl FnMut(&mut DbConnection) -> QueryResult<T>,
    ) -> StoreResult<T> {
        self.read(action, |conn| {
            self.dialect().limit_statements(conn, READ_TIMEOUT)?;
            f(conn)
        })
    }
}
