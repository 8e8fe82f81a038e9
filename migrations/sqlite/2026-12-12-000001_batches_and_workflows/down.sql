DROP TABLE solidq_waiting_executions;
DROP TABLE solidq_job_dependencies;
DROP INDEX index_solidq_jobs_on_batch_id;
ALTER TABLE solidq_jobs DROP COLUMN has_dependants;
ALTER TABLE solidq_jobs DROP COLUMN batch_id;
DROP TABLE solidq_batches;
