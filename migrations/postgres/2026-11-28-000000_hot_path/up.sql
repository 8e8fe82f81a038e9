-- The hot path (enqueue, claim, finish) writes fewer index entries and checks no foreign key.
-- An index on finished_at made every finish a non-HOT update and served no query (counts by
-- queue read the table anyway); nothing looks jobs up by class_name alone.
DROP INDEX index_solidq_jobs_on_finished_at;
DROP INDEX index_solidq_jobs_on_class_name;
-- Ready and claimed rows are written only by the store, beside their job row, in the same
-- transaction; the per-row check cost 40% of an enqueue. Whoever deletes a job deletes its
-- executions first.
ALTER TABLE solidq_ready_executions DROP CONSTRAINT solidq_ready_executions_job_id_fkey;
ALTER TABLE solidq_claimed_executions DROP CONSTRAINT solidq_claimed_executions_job_id_fkey;
