-- Fewer index entries on the hot path: an index on finished_at was rewritten by every finish
-- and served no query; nothing looks jobs up by class_name alone.
DROP INDEX index_solidq_jobs_on_finished_at;
DROP INDEX index_solidq_jobs_on_class_name;
