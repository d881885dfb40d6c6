INSERT INTO first_t VALUES (2);
SELECT SLEEP(COALESCE(@jbtest_sleep, 0)), 'jbdeploy_long_migration';
-- rollback
DELETE FROM first_t WHERE id = 2;
