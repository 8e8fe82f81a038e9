-- Jobs that compose (issue 19): batches with callbacks, and workflows of dependent jobs.

-- A batch: its members carry its id; the counters change in the transaction that ends a member,
-- and the one that brings `pending` to 0 enqueues the callbacks (their ids are written here, so
-- they are enqueued once). Callbacks are stored as JSON of the job to enqueue.
CREATE TABLE IF NOT EXISTS solidq_batches (
    id BIGINT NOT NULL AUTO_INCREMENT,
    description LONGTEXT NULL,
    total BIGINT NOT NULL DEFAULT 0,
    pending BIGINT NOT NULL DEFAULT 0,
    succeeded BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    on_success LONGTEXT NULL,
    on_finish LONGTEXT NULL,
    on_failure LONGTEXT NULL,
    success_job_id BIGINT NULL,
    finish_job_id BIGINT NULL,
    failure_job_id BIGINT NULL,
    created_at DATETIME(6) NOT NULL,
    finished_at DATETIME(6) NULL,
    PRIMARY KEY (id),
    KEY index_solidq_batches_on_finished_at (finished_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Set when another job waits for this one: its end then resolves them (batch members and such
-- jobs take the transactional completion path).
ALTER TABLE solidq_jobs ADD COLUMN batch_id BIGINT NULL, ADD COLUMN has_dependants BOOLEAN NOT NULL DEFAULT FALSE,
    ADD KEY index_solidq_jobs_on_batch_id (batch_id);

-- job_id waits for depends_on_job_id to end; on_failure is 'cancel' (the default) or 'run'.
CREATE TABLE IF NOT EXISTS solidq_job_dependencies (
    job_id BIGINT NOT NULL,
    depends_on_job_id BIGINT NOT NULL,
    on_failure VARCHAR(16) NOT NULL,
    PRIMARY KEY (job_id, depends_on_job_id),
    KEY index_solidq_job_dependencies_on_depends_on (depends_on_job_id),
    CONSTRAINT solidq_job_dependencies_job_id_fkey FOREIGN KEY (job_id)
        REFERENCES solidq_jobs (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Jobs waiting for the jobs they depend on (a state of its own: not ready, not scheduled).
CREATE TABLE IF NOT EXISTS solidq_waiting_executions (
    id BIGINT NOT NULL AUTO_INCREMENT,
    job_id BIGINT NOT NULL,
    queue_name VARCHAR(255) NOT NULL,
    priority INT NOT NULL DEFAULT 0,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY index_solidq_waiting_executions_on_job_id (job_id),
    CONSTRAINT solidq_waiting_executions_job_id_fkey FOREIGN KEY (job_id)
        REFERENCES solidq_jobs (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
