-- Recurring tasks and their runs (as Solid Queue's recurring_tasks and recurring_executions).
-- A static task comes from SOLIDQ_RECURRING or the runtime builder and is rewritten when a
-- scheduler starts; a dynamic one is added and removed at runtime.
CREATE TABLE solidq_recurring_tasks (
    id BIGSERIAL PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    schedule TEXT NOT NULL,
    class_name TEXT NOT NULL,
    arguments TEXT NOT NULL,
    queue_name TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    time_zone TEXT NOT NULL DEFAULT 'UTC',
    run_missed TEXT NOT NULL DEFAULT 'skip',
    is_static BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- One row per run of a task: the unique (task_key, run_at) is what makes many schedulers
-- enqueue each run once. job_id is NULL only inside the transaction that claims the run and
-- enqueues its job. No foreign key to solidq_jobs: the record of a run outlives its job.
CREATE TABLE solidq_recurring_executions (
    id BIGSERIAL PRIMARY KEY,
    task_key TEXT NOT NULL,
    run_at TIMESTAMP NOT NULL,
    job_id BIGINT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX index_solidq_recurring_executions_on_task_key_and_run_at
    ON solidq_recurring_executions (task_key, run_at);
