-- The ETL task of example_jetbase_migrate_before_etl fills this table.
CREATE TABLE daily_sales (
    sales_day VARCHAR(10) PRIMARY KEY,
    orders_count INTEGER NOT NULL,
    total_cents INTEGER NOT NULL
);

-- rollback
DROP TABLE daily_sales;
