-- solidq tables for PostgreSQL, created in current_schema(). Ids come from sequences and are never reused:
-- solidq_claimed_executions.id is the fencing token of a claim.
-- Timestamps are UTC (TIMESTAMP WITHOUT TIME ZONE).

CREATE TABLE solidq_jobs (
    id BIGSERIAL PRIMARY KEY,
    queue_name TEXT NOT NULL,
    class_name TEXT NOT NULL,
    arguments TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    scheduled_at TIMESTAMP NULL,
    finished_at TIMESTAMP NULL,
    last_error TEXT NULL,
    concurrency_key TEXT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX index_solidq_jobs_on_finished_at ON solidq_jobs (finished_at);
CREATE INDEX index_solidq_jobs_on_class_name ON solidq_jobs (class_name);

CREATE TABLE solidq_ready_executions (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL UNIQUE REFERENCES solidq_jobs (id) ON DELETE CASCADE,
    queue_name TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX index_solidq_ready_executions_for_poll_all ON solidq_ready_executions (priority, job_id);
CREATE INDEX index_solidq_ready_executions_for_poll_by_queue ON solidq_ready_executions (queue_name, priority, job_id);

CREATE TABLE solidq_scheduled_executions (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL UNIQUE REFERENCES solidq_jobs (id) ON DELETE CASCADE,
    queue_name TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    scheduled_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX index_solidq_scheduled_executions_for_dispatch ON solidq_scheduled_executions (scheduled_at, priority, job_id);

-- process_id has no foreign key on purpose: claims of a vanished process must be able to
-- exist so that release_orphans can find and return them.
CREATE TABLE solidq_claimed_executions (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL UNIQUE REFERENCES solidq_jobs (id) ON DELETE CASCADE,
    process_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX index_solidq_claimed_executions_on_process_id_and_job_id ON solidq_claimed_executions (process_id, job_id);

CREATE TABLE solidq_failed_executions (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL UNIQUE REFERENCES solidq_jobs (id) ON DELETE CASCADE,
    error TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE solidq_processes (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    pid INTEGER NOT NULL,
    hostname TEXT NOT NULL,
    metadata TEXT NOT NULL,
    last_heartbeat_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX index_solidq_processes_on_last_heartbeat_at ON solidq_processes (last_heartbeat_at);
