CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    email VARCHAR(255) NOT NULL
);

-- rollback
DROP TABLE customers;
