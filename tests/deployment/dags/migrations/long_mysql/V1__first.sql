CREATE TABLE first_t (id INT);
-- rollback
DROP TABLE first_t;
