ALTER TABLE solidq_ready_executions DROP COLUMN class_name;
