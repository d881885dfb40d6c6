CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT REFERENCES customers (id));
-- rollback
DROP TABLE orders;
