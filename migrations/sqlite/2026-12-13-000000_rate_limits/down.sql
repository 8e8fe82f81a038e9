DROP TABLE solidq_rate_limit_starts;
ALTER TABLE solidq_jobs DROP COLUMN rate_period_ms;
ALTER TABLE solidq_jobs DROP COLUMN rate_limit;
ALTER TABLE solidq_jobs DROP COLUMN rate_limit_key;
