-- Global rate limits (issue 19): a job's limit is stored with it; every start of a job with a
-- key is logged, and a claim admits only as many as the sliding window allows.
ALTER TABLE solidq_jobs ADD COLUMN rate_limit_key VARCHAR(255) NULL, ADD COLUMN rate_limit INT NULL,
    ADD COLUMN rate_period_ms BIGINT NULL;

CREATE TABLE IF NOT EXISTS solidq_rate_limit_starts (
    id BIGINT NOT NULL AUTO_INCREMENT,
    rate_limit_key VARCHAR(255) NOT NULL,
    started_at DATETIME(6) NOT NULL,
    job_id BIGINT NOT NULL,
    PRIMARY KEY (id),
    KEY index_solidq_rate_limit_starts_on_key_and_started_at (rate_limit_key, started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
