-- Jobs that compose (issue 19): batches with callbacks, and workflows of dependent jobs.

-- A batch: its members carry its id; the counters change in the transaction that ends a member,
-- and the one that brings `pending` to 0 enqueues the callbacks (their ids are written here, so
-- they are enqueued once). Callbacks are stored as JSON of the job to enqueue.
CREATE TABLE solidq_batches (
    id BIGSERIAL PRIMARY KEY,
    description TEXT NULL,
    total BIGINT NOT NULL DEFAULT 0,
    pending BIGINT NOT NULL DEFAULT 0,
    succeeded BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    on_success TEXT NULL,
    on_finish TEXT NULL,
    on_failure TEXT NULL,
    success_job_id BIGINT NULL,
    finish_job_id BIGINT NULL,
    failure_job_id BIGINT NULL,
    created_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NULL
);
CREATE INDEX index_solidq_batches_on_finished_at ON solidq_batches (finished_at);

ALTER TABLE solidq_jobs ADD COLUMN batch_id BIGINT NULL;
CREATE INDEX index_solidq_jobs_on_batch_id ON solidq_jobs (batch_id) WHERE batch_id IS NOT NULL;
-- Set when another job waits for this one: its end then resolves them (the completion hot path
-- leaves such jobs, and batch members, to the transactional path).
ALTER TABLE solidq_jobs ADD COLUMN has_dependants BOOLEAN NOT NULL DEFAULT FALSE;

-- job_id waits for depends_on_job_id to end; on_failure is 'cancel' (the default: a failed,
-- discarded or cancelled prerequisite cancels job_id) or 'run' (job_id runs anyway).
CREATE TABLE solidq_job_dependencies (
    job_id BIGINT NOT NULL REFERENCES solidq_jobs (id) ON DELETE CASCADE,
    depends_on_job_id BIGINT NOT NULL,
    on_failure TEXT NOT NULL,
    PRIMARY KEY (job_id, depends_on_job_id)
);
CREATE INDEX index_solidq_job_dependencies_on_depends_on ON solidq_job_dependencies (depends_on_job_id);

-- Jobs waiting for the jobs they depend on (a state of its own: not ready, not scheduled).
CREATE TABLE solidq_waiting_executions (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL UNIQUE REFERENCES solidq_jobs (id) ON DELETE CASCADE,
    queue_name TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);
