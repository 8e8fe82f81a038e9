-- The elected leader (issue 18): one row per role; the maintenance sweeps run in the process it
-- names. The leader lock (GET_LOCK on the leader's session connection) decides who may write
-- it; `term` grows by one at each election and fences a deposed leader's writes.
CREATE TABLE IF NOT EXISTS solidq_leaders (
    name VARCHAR(255) NOT NULL,
    process_id BIGINT NOT NULL,
    term BIGINT NOT NULL,
    elected_at DATETIME(6) NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
