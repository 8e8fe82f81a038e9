-- The dashboard (issue 16): every failed attempt kept for the job's page, and the indexes
-- its keyset pages and per-minute chart read.

-- Every failed attempt (retried, failed for good, discarded with an error). Written where a
-- failure is recorded, never on the success path.
CREATE TABLE solidq_job_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    job_id BIGINT NOT NULL REFERENCES solidq_jobs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    error_kind TEXT NOT NULL,
    message TEXT NOT NULL,
    backtrace TEXT NULL,
    cause TEXT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX index_solidq_job_failures_on_job_id ON solidq_job_failures (job_id, id);
CREATE INDEX index_solidq_job_failures_on_created_at ON solidq_job_failures (created_at);

-- Ended jobs newest first, and the last hour's finishes: partial, so that live jobs have no
-- entry (a finish adds one, as it must to be found).
CREATE INDEX index_solidq_jobs_on_finished_at_and_id ON solidq_jobs (finished_at, id) WHERE finished_at IS NOT NULL;
-- Discarded and cancelled jobs newest first; replaces the plain end_state index.
CREATE INDEX index_solidq_jobs_on_end_state_finished_at_id ON solidq_jobs (end_state, finished_at, id)
    WHERE end_state IS NOT NULL;
DROP INDEX index_solidq_jobs_on_end_state;
