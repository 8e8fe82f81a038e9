-- Job lifecycle: discarded and cancelled endings, cancel requests, unique jobs, concurrency
-- limits with blocked jobs, paused queues, and typed failure records. (See the PostgreSQL
-- migration of the same name for what each column means.)
ALTER TABLE solidq_jobs ADD COLUMN end_state TEXT NULL;
ALTER TABLE solidq_jobs ADD COLUMN cancel_requested_at TIMESTAMP NULL;
ALTER TABLE solidq_jobs ADD COLUMN unique_key TEXT NULL;
CREATE UNIQUE INDEX index_solidq_jobs_on_unique_key ON solidq_jobs (unique_key) WHERE unique_key IS NOT NULL;
ALTER TABLE solidq_jobs ADD COLUMN concurrency_limit INTEGER NULL;
ALTER TABLE solidq_jobs ADD COLUMN concurrency_duration_ms BIGINT NULL;
ALTER TABLE solidq_jobs ADD COLUMN concurrency_on_conflict TEXT NULL;
CREATE INDEX index_solidq_jobs_on_concurrency_key ON solidq_jobs (concurrency_key) WHERE concurrency_key IS NOT NULL;
CREATE INDEX index_solidq_jobs_on_end_state ON solidq_jobs (end_state) WHERE end_state IS NOT NULL;

CREATE TABLE solidq_blocked_executions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    job_id BIGINT NOT NULL UNIQUE REFERENCES solidq_jobs (id) ON DELETE CASCADE,
    queue_name TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    concurrency_key TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX index_solidq_blocked_executions_for_release ON solidq_blocked_executions (concurrency_key, priority, job_id);

CREATE TABLE solidq_pauses (
    queue_name TEXT PRIMARY KEY NOT NULL,
    created_at TIMESTAMP NOT NULL
);

ALTER TABLE solidq_failed_executions ADD COLUMN error_kind TEXT NOT NULL DEFAULT 'Other';
ALTER TABLE solidq_failed_executions ADD COLUMN message TEXT NOT NULL DEFAULT '';
ALTER TABLE solidq_failed_executions ADD COLUMN backtrace TEXT NULL;
ALTER TABLE solidq_failed_executions ADD COLUMN cause TEXT NULL;
UPDATE solidq_failed_executions SET
    error_kind = CASE WHEN json_valid(error) THEN COALESCE(json_extract(error, '$.kind'), json_extract(error, '$.class'), 'Other') ELSE 'Other' END,
    message = CASE WHEN json_valid(error) THEN COALESCE(json_extract(error, '$.message'), '') ELSE error END,
    backtrace = CASE WHEN json_valid(error) THEN json_extract(error, '$.backtrace') END,
    cause = CASE WHEN json_valid(error) THEN json_extract(error, '$.cause') END;
UPDATE solidq_failed_executions SET error_kind = 'Error' WHERE error_kind = 'JobError';
ALTER TABLE solidq_failed_executions DROP COLUMN error;
