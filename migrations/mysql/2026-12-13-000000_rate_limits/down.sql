DROP TABLE IF EXISTS solidq_rate_limit_starts;
ALTER TABLE solidq_jobs DROP COLUMN rate_period_ms, DROP COLUMN rate_limit, DROP COLUMN rate_limit_key;
