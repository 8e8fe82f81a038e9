CREATE INDEX index_solidq_jobs_on_class_name ON solidq_jobs (class_name);
CREATE INDEX index_solidq_jobs_on_finished_at ON solidq_jobs (finished_at);
