//! Table definitions, shared by every backend (see `migrations/sqlite`, `migrations/postgres`
//! and `migrations/mysql`). All times are UTC, of the SQL type [`Moment`](super::sql_types::Moment).
#![allow(missing_docs)]

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Every job ever enqueued; its state is which execution table holds it.
    solidq_jobs (id) {
        id -> BigInt,
        queue_name -> Text,
        /// The job's kind.
        class_name -> Text,
        /// JSON text.
        arguments -> Text,
        priority -> Integer,
        /// Executions started.
        attempts -> Integer,
        max_attempts -> Integer,
        scheduled_at -> Nullable<Moment>,
        finished_at -> Nullable<Moment>,
        /// JSON text of a `FailureRecord`.
        last_error -> Nullable<Text>,
        concurrency_key -> Nullable<Text>,
        created_at -> Moment,
        updated_at -> Moment,
        /// NULL with `finished_at` set: finished; else `discarded` or `cancelled`.
        end_state -> Nullable<Text>,
        cancel_requested_at -> Nullable<Moment>,
        /// Held while the job may still run.
        unique_key -> Nullable<Text>,
        concurrency_limit -> Nullable<Integer>,
        concurrency_duration_ms -> Nullable<BigInt>,
        /// `block` or `discard`.
        concurrency_on_conflict -> Nullable<Text>,
        /// The batch this job belongs to (or whose callback it is: see `store::composition`).
        batch_id -> Nullable<BigInt>,
        /// Another job waits for this one (`solidq_job_dependencies`).
        has_dependants -> Bool,
        /// The job's rate limit (`model::RateLimit`): key, starts per period, period.
        rate_limit_key -> Nullable<Text>,
        rate_limit -> Nullable<Integer>,
        rate_period_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Jobs waiting for a worker.
    solidq_ready_executions (id) {
        id -> BigInt,
        job_id -> BigInt,
        queue_name -> Text,
        priority -> Integer,
        created_at -> Moment,
        /// The job's kind: workers claim only kinds they have handlers for.
        class_name -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Jobs waiting for their time.
    solidq_scheduled_executions (id) {
        id -> BigInt,
        job_id -> BigInt,
        queue_name -> Text,
        priority -> Integer,
        scheduled_at -> Moment,
        created_at -> Moment,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Jobs held by a process; `id` is the claim's fencing token and is never reused.
    solidq_claimed_executions (id) {
        id -> BigInt,
        job_id -> BigInt,
        /// No foreign key: orphans are possible and swept by `release_orphans`.
        process_id -> BigInt,
        created_at -> Moment,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Jobs that failed for good.
    solidq_failed_executions (id) {
        id -> BigInt,
        job_id -> BigInt,
        created_at -> Moment,
        /// `FailureKind` name.
        error_kind -> Text,
        message -> Text,
        backtrace -> Nullable<Text>,
        cause -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Jobs over their concurrency limit, waiting for a holder to end.
    solidq_blocked_executions (id) {
        id -> BigInt,
        job_id -> BigInt,
        queue_name -> Text,
        priority -> Integer,
        concurrency_key -> Text,
        created_at -> Moment,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Paused queues: nothing is claimed from them.
    solidq_pauses (queue_name) {
        queue_name -> Text,
        created_at -> Moment,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Registered runtime processes and their heartbeats.
    solidq_processes (id) {
        id -> BigInt,
        kind -> Text,
        name -> Text,
        pid -> Integer,
        hostname -> Text,
        /// JSON text.
        metadata -> Text,
        last_heartbeat_at -> Moment,
        created_at -> Moment,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Recurring tasks: static ones (configured) and dynamic ones (added at runtime).
    solidq_recurring_tasks (id) {
        id -> BigInt,
        /// The task's unique name.
        key -> Text,
        /// Cron expression or `every <n>s|m|h|d`.
        schedule -> Text,
        /// Kind of the job it enqueues.
        class_name -> Text,
        /// JSON text of the job's arguments.
        arguments -> Text,
        queue_name -> Text,
        priority -> Integer,
        /// IANA name.
        time_zone -> Text,
        /// `skip` or `latest`.
        run_missed -> Text,
        is_static -> Bool,
        created_at -> Moment,
        updated_at -> Moment,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// One row per run of a recurring task, unique by (task_key, run_at).
    solidq_recurring_executions (id) {
        id -> BigInt,
        task_key -> Text,
        /// The run's time on the schedule (whole seconds).
        run_at -> Moment,
        /// The job enqueued for it; NULL only inside the enqueueing transaction.
        job_id -> Nullable<BigInt>,
        created_at -> Moment,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Batches of jobs with callbacks: see `store::composition`.
    solidq_batches (id) {
        id -> BigInt,
        description -> Nullable<Text>,
        /// Jobs added in all.
        total -> BigInt,
        /// Members that have not ended.
        pending -> BigInt,
        /// Members that finished.
        succeeded -> BigInt,
        /// Members that failed for good, were discarded or cancelled.
        failed -> BigInt,
        /// JSON of the callback jobs (`CallbackJob`).
        on_success -> Nullable<Text>,
        on_finish -> Nullable<Text>,
        on_failure -> Nullable<Text>,
        /// The callbacks enqueued when the last member ended.
        success_job_id -> Nullable<BigInt>,
        finish_job_id -> Nullable<BigInt>,
        failure_job_id -> Nullable<BigInt>,
        created_at -> Moment,
        /// When the last member ended.
        finished_at -> Nullable<Moment>,
    }
}

diesel::table! {
    /// `job_id` waits for `depends_on_job_id` to end.
    solidq_job_dependencies (job_id, depends_on_job_id) {
        job_id -> BigInt,
        depends_on_job_id -> BigInt,
        /// `cancel` or `run`: what a failed prerequisite does to `job_id`.
        on_failure -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Jobs waiting for the jobs they depend on.
    solidq_waiting_executions (id) {
        id -> BigInt,
        job_id -> BigInt,
        queue_name -> Text,
        priority -> Integer,
        created_at -> Moment,
    }
}

diesel::joinable!(solidq_waiting_executions -> solidq_jobs (job_id));
diesel::joinable!(solidq_ready_executions -> solidq_jobs (job_id));
diesel::joinable!(solidq_scheduled_executions -> solidq_jobs (job_id));
diesel::joinable!(solidq_claimed_executions -> solidq_jobs (job_id));
diesel::joinable!(solidq_failed_executions -> solidq_jobs (job_id));
diesel::joinable!(solidq_blocked_executions -> solidq_jobs (job_id));
diesel::joinable!(solidq_job_failures -> solidq_jobs (job_id));

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// The elected leader of each role (`maintenance`): see `store::leadership`.
    solidq_leaders (name) {
        name -> Text,
        process_id -> BigInt,
        term -> BigInt,
        elected_at -> Moment,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Every start of a job with a rate-limit key, kept while it is inside the window (see
    /// `store::rate_limits`).
    solidq_rate_limit_starts (id) {
        id -> BigInt,
        rate_limit_key -> Text,
        started_at -> Moment,
        job_id -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    solidq_rate_limit_starts,
    solidq_jobs,
    solidq_ready_executions,
    solidq_scheduled_executions,
    solidq_claimed_executions,
    solidq_failed_executions,
    solidq_processes,
    solidq_blocked_executions,
    solidq_pauses,
    solidq_recurring_tasks,
    solidq_recurring_executions,
    solidq_job_failures,
    solidq_leaders,
    solidq_batches,
    solidq_job_dependencies,
    solidq_waiting_executions,
);

diesel::table! {
    use diesel::sql_types::*;
    use crate::store::sql_types::Moment;

    /// Every failed attempt of every job (retried, failed for good, discarded with an error),
    /// kept for the job's page; `solidq_jobs.last_error` has only the last.
    solidq_job_failures (id) {
        id -> BigInt,
        job_id -> BigInt,
        /// The attempt that failed (1 for the first execution).
        attempt -> Integer,
        /// `FailureKind` name.
        error_kind -> Text,
        message -> Text,
        backtrace -> Nullable<Text>,
        cause -> Nullable<Text>,
        created_at -> Moment,
    }
}
