INSERT INTO no_such_table VALUES (1);
-- rollback
SELECT 1;
