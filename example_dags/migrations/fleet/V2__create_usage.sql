CREATE TABLE usage_daily (
    tenant_id INTEGER NOT NULL,
    usage_day DATE NOT NULL,
    units INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, usage_day)
);

-- rollback
DROP TABLE usage_daily;
