CREATE TABLE half_done (id INT);
INSERT INTO half_done VALUES (1);
SELECT pg_sleep(coalesce(current_setting('jbtest.sleep', true), '0')::float), 'jbdeploy_long_migration';
-- rollback
DROP TABLE half_done;
