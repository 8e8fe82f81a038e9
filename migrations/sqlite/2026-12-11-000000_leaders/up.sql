-- The elected leader (issue 18): one row per role; the maintenance sweeps run in the process it
-- names. The leader lock (a file lock beside the database) decides who may write it; `term`
-- grows by one at each election and fences a deposed leader's writes.
CREATE TABLE solidq_leaders (
    name TEXT PRIMARY KEY NOT NULL,
    process_id BIGINT NOT NULL,
    term BIGINT NOT NULL,
    elected_at TIMESTAMP NOT NULL
);
