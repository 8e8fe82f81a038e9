DROP TRIGGER solidq_ready_inserted ON solidq_ready_executions;
DROP FUNCTION solidq_notify_ready();
