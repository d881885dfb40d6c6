CREATE TABLE watched (id INT PRIMARY KEY);
-- rollback
DROP TABLE watched;
