CREATE TABLE prices (
    product_id INTEGER NOT NULL,
    price_cents INTEGER NOT NULL
);

-- rollback
DROP TABLE prices;
