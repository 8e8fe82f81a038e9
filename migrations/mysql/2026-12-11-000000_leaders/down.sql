DROP TABLE IF EXISTS solidq_leaders;
