ALTER TABLE solidq_failed_executions ADD COLUMN error TEXT NOT NULL DEFAULT '';
UPDATE solidq_failed_executions SET error = json_build_object('kind', error_kind, 'message', message, 'backtrace', backtrace, 'cause', cause)::text;
ALTER TABLE solidq_failed_executions DROP COLUMN error_kind, DROP COLUMN message, DROP COLUMN backtrace, DROP COLUMN cause;
DROP TABLE solidq_pauses;
DROP TABLE solidq_blocked_executions;
DROP INDEX index_solidq_jobs_on_end_state;
DROP INDEX index_solidq_jobs_on_concurrency_key;
DROP INDEX index_solidq_jobs_on_unique_key;
ALTER TABLE solidq_jobs DROP COLUMN end_state, DROP COLUMN cancel_requested_at, DROP COLUMN unique_key,
    DROP COLUMN concurrency_limit, DROP COLUMN concurrency_duration_ms, DROP COLUMN concurrency_on_conflict;
