CREATE TABLE half_done (id INT);
INSERT INTO half_done VALUES (1);
SELECT SLEEP(COALESCE(@jbtest_sleep, 0)), 'jbdeploy_long_migration';
-- rollback
DROP TABLE half_done;
