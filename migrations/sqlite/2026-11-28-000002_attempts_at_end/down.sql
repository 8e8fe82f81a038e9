UPDATE solidq_jobs SET attempts = attempts + 1
WHERE id IN (SELECT job_id FROM solidq_claimed_executions);
