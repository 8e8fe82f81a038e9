DROP TABLE IF EXISTS solidq_waiting_executions;
DROP TABLE IF EXISTS solidq_job_dependencies;
ALTER TABLE solidq_jobs DROP KEY index_solidq_jobs_on_batch_id, DROP COLUMN has_dependants, DROP COLUMN batch_id;
DROP TABLE IF EXISTS solidq_batches;
