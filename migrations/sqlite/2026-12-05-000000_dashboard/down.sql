CREATE INDEX index_solidq_jobs_on_end_state ON solidq_jobs (end_state) WHERE end_state IS NOT NULL;
DROP INDEX index_solidq_jobs_on_end_state_finished_at_id;
DROP INDEX index_solidq_jobs_on_finished_at_and_id;
DROP TABLE solidq_job_failures;
