-- Attempts are now written when an execution ends (or its process dies), not at the claim:
-- the jobs claimed while this runs were counted by the old claim, so take that count back
-- (the end of their execution writes it again).
UPDATE solidq_jobs SET attempts = attempts - 1
WHERE attempts > 0 AND id IN (SELECT job_id FROM solidq_claimed_executions);
