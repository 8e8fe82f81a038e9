-- Job lifecycle: discarded and cancelled endings, cancel requests, unique jobs, concurrency
-- limits with blocked jobs, paused queues, and typed failure records.

-- How a job that will not run again ended: NULL with finished_at set is finished (the hot
-- path writes nothing more), otherwise 'discarded' or 'cancelled'.
ALTER TABLE solidq_jobs ADD COLUMN end_state TEXT NULL;
-- Asked for while the job was claimed: its process tells the running handler, and the job
-- ends as cancelled.
ALTER TABLE solidq_jobs ADD COLUMN cancel_requested_at TIMESTAMP NULL;
-- Held while the job may still run (scheduled, ready, claimed, blocked) and cleared when it
-- ends or fails: an UPDATE that leaves it NULL stays a HOT update.
ALTER TABLE solidq_jobs ADD COLUMN unique_key TEXT NULL;
CREATE UNIQUE INDEX index_solidq_jobs_on_unique_key ON solidq_jobs (unique_key) WHERE unique_key IS NOT NULL;
-- A concurrency key admits at most concurrency_limit jobs into ready or claimed at once; a
-- holder claimed longer than concurrency_duration_ms ago stops counting (the safety net).
ALTER TABLE solidq_jobs ADD COLUMN concurrency_limit INTEGER NULL;
ALTER TABLE solidq_jobs ADD COLUMN concurrency_duration_ms BIGINT NULL;
-- 'block' (wait in solidq_blocked_executions) or 'discard'.
ALTER TABLE solidq_jobs ADD COLUMN concurrency_on_conflict TEXT NULL;
CREATE INDEX index_solidq_jobs_on_concurrency_key ON solidq_jobs (concurrency_key) WHERE concurrency_key IS NOT NULL;
CREATE INDEX index_solidq_jobs_on_end_state ON solidq_jobs (end_state) WHERE end_state IS NOT NULL;

CREATE TABLE solidq_blocked_executions (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL UNIQUE REFERENCES solidq_jobs (id) ON DELETE CASCADE,
    queue_name TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    concurrency_key TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX index_solidq_blocked_executions_for_release ON solidq_blocked_executions (concurrency_key, priority, job_id);

-- A queue listed here is not claimed from.
CREATE TABLE solidq_pauses (
    queue_name TEXT PRIMARY KEY,
    created_at TIMESTAMP NOT NULL
);

-- The failure record as typed columns instead of one JSON text.
ALTER TABLE solidq_failed_executions ADD COLUMN error_kind TEXT NOT NULL DEFAULT 'Other';
ALTER TABLE solidq_failed_executions ADD COLUMN message TEXT NOT NULL DEFAULT '';
ALTER TABLE solidq_failed_executions ADD COLUMN backtrace TEXT NULL;
ALTER TABLE solidq_failed_executions ADD COLUMN cause TEXT NULL;
UPDATE solidq_failed_executions SET
    error_kind = CASE WHEN error ~ '^\s*\{' THEN COALESCE(error::json->>'kind', error::json->>'class', 'Other') ELSE 'Other' END,
    message = CASE WHEN error ~ '^\s*\{' THEN COALESCE(error::json->>'message', '') ELSE error END,
    backtrace = CASE WHEN error ~ '^\s*\{' THEN error::json->>'backtrace' END,
    cause = CASE WHEN error ~ '^\s*\{' THEN error::json->>'cause' END;
UPDATE solidq_failed_executions SET error_kind = 'Error' WHERE error_kind = 'JobError';
ALTER TABLE solidq_failed_executions DROP COLUMN error;
