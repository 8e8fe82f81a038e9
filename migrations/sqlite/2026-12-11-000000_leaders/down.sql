DROP TABLE solidq_leaders;
