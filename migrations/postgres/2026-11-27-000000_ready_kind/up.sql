-- The kind of a ready job, beside its queue and priority: a process claims only the kinds it
-- has handlers for, so a job of a kind only a newer release knows waits for that release.
ALTER TABLE solidq_ready_executions ADD COLUMN class_name TEXT NOT NULL DEFAULT '';
UPDATE solidq_ready_executions r SET class_name = j.class_name FROM solidq_jobs j WHERE j.id = r.job_id;
