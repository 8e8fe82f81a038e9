-- The kind of a ready job, beside its queue and priority: a process claims only the kinds it
-- has handlers for, so a job of a kind only a newer release knows waits for that release.
ALTER TABLE solidq_ready_executions ADD COLUMN class_name TEXT NOT NULL DEFAULT '';
UPDATE solidq_ready_executions
SET class_name = (SELECT class_name FROM solidq_jobs WHERE solidq_jobs.id = solidq_ready_executions.job_id);
