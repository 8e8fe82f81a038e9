DROP TABLE solidq_recurring_executions;
DROP TABLE solidq_recurring_tasks;
