//! What the store's roles hand to the dialects: the parameters of the statements where
//! backends differ, and the limits of statements. Below both, so that a dialect imports
//! nothing from the roles.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::solidq_jobs as jobs;
use super::sql_types::{at, At};
use crate::model::{ClaimToken, NewJob, ProcessId, QueuePattern};

/// Ids bound per statement when a list of ids is sent (SQLite binds each one).
pub(crate) const ID_CHUNK: usize = 5_000;

/// A row of `solidq_jobs` to insert (every column bound, so SQLite gets one multi-row INSERT).
#[derive(Insertable)]
#[diesel(table_name = jobs, treat_none_as_default_value = false)]
pub(crate) struct JobInsert<'a> {
    queue_name: &'a str,
    class_name: &'a str,
    arguments: &'a str,
    priority: i32,
    attempts: i32,
    max_attempts: i32,
    scheduled_at: Option<NaiveDateTime>,
    created_at: At,
    updated_at: At,
}

impl<'a> JobInsert<'a> {
    /// Bind parameters per row.
    const BINDS: usize = 9;

    pub(crate) fn new(job: &'a NewJob, now: NaiveDateTime) -> Self {
        JobInsert {
            queue_name: &job.queue,
            class_name: &job.kind,
            arguments: &job.arguments,
            priority: job.priority,
            attempts: 0,
            max_attempts: job.max_attempts,
            scheduled_at: job.scheduled_at,
            created_at: at(now),
            updated_at: at(now),
        }
    }

    /// Rows per INSERT for a backend allowing `max_binds` bind parameters per statement.
    pub(crate) fn rows_per_statement(max_binds: usize) -> usize {
        (max_binds / Self::BINDS).max(1)
    }
}

/// What a claim asks for: up to `limit` ready jobs of `kinds` on `queues` (in that order) for
/// `process`, at `now`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    pub(crate) process: ProcessId,
    pub(crate) queues: &'a [QueuePattern],
    pub(crate) kinds: &'a [String],
    pub(crate) limit: usize,
    pub(crate) now: NaiveDateTime,
}

/// A LIKE pattern matching every string that starts with `prefix`, with `\` as escape.
/// The claims one completion statement took, with the concurrency keys their jobs held
/// (for the store to release).
#[derive(Debug, Default)]
pub(crate) struct CompletedClaims {
    pub taken: Vec<ClaimToken>,
    pub keys: BTreeSet<String>,
    /// Jobs finished that got a dependant while the statement ran: their dependants are
    /// resolved right after (one-statement completions leave jobs known to compose alone).
    pub composing: Vec<crate::model::JobId>,
}

pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_inserted_with_one_statement_on_both_backends() {
        let now = chrono::DateTime::from_timestamp(0, 0).unwrap().naive_utc();
        let new_jobs: Vec<NewJob> = (0..3)
            .map(|i| NewJob {
                kind: "k".into(),
                arguments: "{}".into(),
                queue: "q".into(),
                priority: 0,
                max_attempts: 1,
                scheduled_at: (i == 1).then_some(now),
                unique_key: None,
                concurrency: None,
                after: Vec::new(),
                rate_limit: None,
            })
            .collect();
        let rows: Vec<JobInsert<'_>> = new_jobs.iter().map(|job| JobInsert::new(job, now)).collect();
        let query = diesel::insert_into(jobs::table).values(&rows);
        let sqlite = diesel::debug_query::<diesel::sqlite::Sqlite, _>(&query).to_string();
        let pg = diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string();
        for sql in [sqlite, pg] {
            assert_eq!(sql.matches("INSERT INTO").count(), 1, "{sql}");
            assert_eq!(sql.matches("), (").count(), 2, "{sql}");
            assert!(!sql.contains("DEFAULT"), "{sql}");
        }
    }

    #[test]
    fn like_prefix_escapes_wildcards_and_the_escape_character() {
        assert_eq!(like_prefix("reports"), "reports%");
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}
