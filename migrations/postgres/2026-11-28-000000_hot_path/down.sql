ALTER TABLE solidq_claimed_executions ADD CONSTRAINT solidq_claimed_executions_job_id_fkey
    FOREIGN KEY (job_id) REFERENCES solidq_jobs (id) ON DELETE CASCADE;
ALTER TABLE solidq_ready_executions ADD CONSTRAINT solidq_ready_executions_job_id_fkey
    FOREIGN KEY (job_id) REFERENCES solidq_jobs (id) ON DELETE CASCADE;
CREATE INDEX index_solidq_jobs_on_class_name ON solidq_jobs (class_name);
CREATE INDEX index_solidq_jobs_on_finished_at ON solidq_jobs (finished_at);
