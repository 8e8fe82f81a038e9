-- solidq for MySQL 8.0.1+ / MariaDB 10.6+ (InnoDB, SKIP LOCKED). One migration; every statement is
-- idempotent (DDL commits implicitly, so a run cut half-way is run again whole). Names are
-- VARCHAR(255) utf8mb4_bin (case-sensitive, as on the other backends); times are DATETIME(6) UTC
-- (TIMESTAMP ends in 2038); ids are BIGINT AUTO_INCREMENT, never reused while the server runs
-- (claimed_executions.id is the claim's fencing token). No partial indexes: plain ones, and a
-- plain UNIQUE on nullable unique_key (NULLs never collide).

CREATE TABLE IF NOT EXISTS solidq_jobs (
    id BIGINT NOT NULL AUTO_INCREMENT,
    queue_name VARCHAR(255) NOT NULL,
    class_name VARCHAR(255) NOT NULL,
    arguments LONGTEXT NOT NULL,
    priority INT NOT NULL DEFAULT 0,
    attempts INT NOT NULL DEFAULT 0,
    max_attempts INT NOT NULL,
    scheduled_at DATETIME(6) NULL,
    finished_at DATETIME(6) NULL,
    last_error LONGTEXT NULL,
    concurrency_key VARCHAR(255) NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    end_state VARCHAR(32) NULL,
    cancel_requested_at DATETIME(6) NULL,
    unique_key VARCHAR(255) NULL,
    concurrency_limit INT NULL,
    concurrency_duration_ms BIGINT NULL,
    concurrency_on_conflict VARCHAR(32) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY index_solidq_jobs_on_unique_key (unique_key),
    KEY index_solidq_jobs_on_concurrency_key (concurrency_key),
    KEY index_solidq_jobs_on_finished_at_and_id (finished_at, id),
    KEY index_solidq_jobs_on_end_state_finished_at_id (end_state, finished_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- No foreign key (as PostgreSQL since hot_path): written only beside the job, in one transaction.
CREATE TABLE IF NOT EXISTS solidq_ready_executions (
    id BIGINT NOT NULL AUTO_INCREMENT,
    job_id BIGINT NOT NULL,
    queue_name VARCHAR(255) NOT NULL,
    priority INT NOT NULL DEFAULT 0,
    created_at DATETIME(6) NOT NULL,
    class_name VARCHAR(255) NOT NULL DEFAULT '',
    PRIMARY KEY (id),
    UNIQUE KEY index_solidq_ready_executions_on_job_id (job_id),
    KEY index_solidq_ready_executions_for_poll_all (priority, job_id),
    KEY index_solidq_ready_executions_for_poll_by_queue (queue_name, priority, job_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS solidq_scheduled_executions (
    id BIGINT NOT NULL AUTO_INCREMENT,
    job_id BIGINT NOT NULL,
    queue_name VARCHAR(255) NOT NULL,
    priority INT NOT NULL DEFAULT 0,
    scheduled_at DATETIME(6) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY index_solidq_scheduled_executions_on_job_id (job_id),
    KEY index_solidq_scheduled_executions_for_dispatch (scheduled_at, priority, job_id),
    CONSTRAINT solidq_scheduled_executions_job_id_fkey FOREIGN KEY (job_id)
        REFERENCES solidq_jobs (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- process_id has no foreign key on purpose (release_orphans finds claims of vanished processes).
CREATE TABLE IF NOT EXISTS solidq_claimed_executions (
    id BIGINT NOT NULL AUTO_INCREMENT,
    job_id BIGINT NOT NULL,
    process_id BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY index_solidq_claimed_executions_on_job_id (job_id),
    KEY index_solidq_claimed_executions_on_process_id_and_job_id (process_id, job_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS solidq_failed_executions (
    id BIGINT NOT NULL AUTO_INCREMENT,
    job_id BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    error_kind VARCHAR(255) NOT NULL DEFAULT 'Other',
    message LONGTEXT NOT NULL,
    backtrace LONGTEXT NULL,
    cause LONGTEXT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY index_solidq_failed_executions_on_job_id (job_id),
    CONSTRAINT solidq_failed_executions_job_id_fkey FOREIGN KEY (job_id)
        REFERENCES solidq_jobs (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS solidq_blocked_executions (
    id BIGINT NOT NULL AUTO_INCREMENT,
    job_id BIGINT NOT NULL,
    queue_name VARCHAR(255) NOT NULL,
    priority INT NOT NULL DEFAULT 0,
    concurrency_key VARCHAR(255) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY index_solidq_blocked_executions_on_job_id (job_id),
    KEY index_solidq_blocked_executions_for_release (concurrency_key, priority, job_id),
    CONSTRAINT solidq_blocked_executions_job_id_fkey FOREIGN KEY (job_id)
        REFERENCES solidq_jobs (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS solidq_pauses (
    queue_name VARCHAR(255) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (queue_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS solidq_processes (
    id BIGINT NOT NULL AUTO_INCREMENT,
    kind VARCHAR(255) NOT NULL,
    name VARCHAR(255) NOT NULL,
    pid INT NOT NULL,
    hostname VARCHAR(255) NOT NULL,
    metadata LONGTEXT NOT NULL,
    last_heartbeat_at DATETIME(6) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY index_solidq_processes_on_name (name),
    KEY index_solidq_processes_on_last_heartbeat_at (last_heartbeat_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS solidq_recurring_tasks (
    id BIGINT NOT NULL AUTO_INCREMENT,
    `key` VARCHAR(255) NOT NULL,
    schedule VARCHAR(1024) NOT NULL,
    class_name VARCHAR(255) NOT NULL,
    arguments LONGTEXT NOT NULL,
    queue_name VARCHAR(255) NOT NULL,
    priority INT NOT NULL DEFAULT 0,
    time_zone VARCHAR(64) NOT NULL DEFAULT 'UTC',
    run_missed VARCHAR(16) NOT NULL DEFAULT 'skip',
    is_static BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY index_solidq_recurring_tasks_on_key (`key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- No foreign key to solidq_jobs: the record of a run outlives its job.
CREATE TABLE IF NOT EXISTS solidq_recurring_executions (
    id BIGINT NOT NULL AUTO_INCREMENT,
    task_key VARCHAR(255) NOT NULL,
    run_at DATETIME(6) NOT NULL,
    job_id BIGINT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY index_solidq_recurring_executions_on_task_key_and_run_at (task_key, run_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS solidq_job_failures (
    id BIGINT NOT NULL AUTO_INCREMENT,
    job_id BIGINT NOT NULL,
    attempt INT NOT NULL,
    error_kind VARCHAR(255) NOT NULL,
    message LONGTEXT NOT NULL,
    backtrace LONGTEXT NULL,
    cause LONGTEXT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    KEY index_solidq_job_failures_on_job_id (job_id, id),
    KEY index_solidq_job_failures_on_created_at (created_at),
    CONSTRAINT solidq_job_failures_job_id_fkey FOREIGN KEY (job_id)
        REFERENCES solidq_jobs (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- MySQL only: one row per concurrency key, locked (ON DUPLICATE KEY UPDATE) to serialize the
-- admissions and releases of the key until commit (PostgreSQL: pg_advisory_xact_lock).
CREATE TABLE IF NOT EXISTS solidq_concurrency_locks (
    concurrency_key VARCHAR(255) NOT NULL,
    PRIMARY KEY (concurrency_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
