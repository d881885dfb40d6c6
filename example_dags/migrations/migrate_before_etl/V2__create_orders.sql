CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL,
    ordered_on VARCHAR(10) NOT NULL
);
CREATE INDEX ix_orders_ordered_on ON orders (ordered_on);

-- rollback
-- Dropping the table drops its index on every database (DROP INDEX syntax differs).
DROP TABLE orders;
