-- Global rate limits (issue 19): a job's limit is stored with it; every start of a job with a
-- key is logged, and a claim admits only as many as the sliding window allows.
ALTER TABLE solidq_jobs ADD COLUMN rate_limit_key TEXT NULL,
    ADD COLUMN rate_limit INTEGER NULL,
    ADD COLUMN rate_period_ms BIGINT NULL;

CREATE TABLE solidq_rate_limit_starts (
    id BIGSERIAL PRIMARY KEY,
    rate_limit_key TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    job_id BIGINT NOT NULL
);
CREATE INDEX index_solidq_rate_limit_starts_on_key_and_started_at
    ON solidq_rate_limit_starts (rate_limit_key, started_at);
