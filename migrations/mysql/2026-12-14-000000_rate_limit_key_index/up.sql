-- Jobs of a rate-limit key not yet ended: a claim over the limit plans its deferred jobs after
-- the key's jobs already planned, and a wake looks for the next planned job of any key. Without
-- it both scanned every scheduled job. (MySQL has no partial index: `finished_at IS NULL` is
-- the index's second column.)
CREATE INDEX index_solidq_jobs_on_rate_limit_key ON solidq_jobs (rate_limit_key, finished_at);
