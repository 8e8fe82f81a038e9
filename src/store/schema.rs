//! Table definitions, shared by both backends (see `migrations/sqlite` and
//! `migrations/postgres`). All timestamps are UTC.
#![allow(missing_docs)]

diesel::table! {
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
        scheduled_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        /// JSON text of a `FailureRecord`.
        last_error -> Nullable<Text>,
        concurrency_key -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        /// NULL with `finished_at` set: finished; else `discarded` or `cancelled`.
        end_state -> Nullable<Text>,
        cancel_requested_at -> Nullable<Timestamp>,
        /// Held while the job may still run.
        unique_key -> Nullable<Text>,
        concurrency_limit -> Nullable<Integer>,
        concurrency_duration_ms -> Nullable<BigInt>,
        /// `block` or `discard`.
        concurrency_on_conflict -> Nullable<Text>,
    }
}

diesel::table! {
    /// Jobs waiting for a worker.
    solidq_ready_executions (id) {
        id -> BigInt,
        job_id -> BigInt,
        queue_name -> Text,
        priority -> Integer,
        created_at -> Timestamp,
        /// The job's kind: workers claim only kinds they have handlers for.
        class_name -> Text,
    }
}

diesel::table! {
    /// Jobs waiting for their time.
    solidq_scheduled_executions (id) {
        id -> BigInt,
        job_id -> BigInt,
        queue_name -> Text,
        priority -> Integer,
        scheduled_at -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Jobs held by a process; `id` is the claim's fencing token and is never reused.
    solidq_claimed_executions (id) {
        id -> BigInt,
        job_id -> BigInt,
        /// No foreign key: orphans are possible and swept by `release_orphans`.
        process_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Jobs that failed for good.
    solidq_failed_executions (id) {
        id -> BigInt,
        job_id -> BigInt,
        created_at -> Timestamp,
        /// `FailureKind` name.
        error_kind -> Text,
        message -> Text,
        backtrace -> Nullable<Text>,
        cause -> Nullable<Text>,
    }
}

diesel::table! {
    /// Jobs over their concurrency limit, waiting for a holder to end.
    solidq_blocked_executions (id) {
        id -> BigInt,
        job_id -> BigInt,
        queue_name -> Text,
        priority -> Integer,
        concurrency_key -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Paused queues: nothing is claimed from them.
    solidq_pauses (queue_name) {
        queue_name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Registered runtime processes and their heartbeats.
    solidq_processes (id) {
        id -> BigInt,
        kind -> Text,
        name -> Text,
        pid -> Integer,
        hostname -> Text,
        /// JSON text.
        metadata -> Text,
        last_heartbeat_at -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::table! {
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
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// One row per run of a recurring task, unique by (task_key, run_at).
    solidq_recurring_executions (id) {
        id -> BigInt,
        task_key -> Text,
        /// The run's time on the schedule (whole seconds).
        run_at -> Timestamp,
        /// The job enqueued for it; NULL only inside the enqueueing transaction.
        job_id -> Nullable<BigInt>,
        created_at -> Timestamp,
    }
}

diesel::joinable!(solidq_ready_executions -> solidq_jobs (job_id));
diesel::joinable!(solidq_scheduled_executions -> solidq_jobs (job_id));
diesel::joinable!(solidq_claimed_executions -> solidq_jobs (job_id));
diesel::joinable!(solidq_failed_executions -> solidq_jobs (job_id));
diesel::joinable!(solidq_blocked_executions -> solidq_jobs (job_id));
diesel::joinable!(solidq_job_failures -> solidq_jobs (job_id));

diesel::allow_tables_to_appear_in_same_query!(
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
);

diesel::table! {
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
        created_at -> Timestamp,
    }
}
