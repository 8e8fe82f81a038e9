-- Jobs of a rate-limit key not yet ended: a claim over the limit plans its deferred jobs after
-- the key's jobs already planned, and a wake looks for the next planned job of any key. Without
-- it both scanned every scheduled job (a table of future reminders made each 100s of ms).
CREATE INDEX index_solidq_jobs_on_rate_limit_key ON solidq_jobs (rate_limit_key)
    WHERE rate_limit_key IS NOT NULL AND finished_at IS NULL;
