CREATE TABLE stock (
    product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL
);

-- rollback
DROP TABLE stock;
