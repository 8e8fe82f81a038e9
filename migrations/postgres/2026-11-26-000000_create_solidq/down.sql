DROP TABLE solidq_processes;
DROP TABLE solidq_failed_executions;
DROP TABLE solidq_claimed_executions;
DROP TABLE solidq_scheduled_executions;
DROP TABLE solidq_ready_executions;
DROP TABLE solidq_jobs;
