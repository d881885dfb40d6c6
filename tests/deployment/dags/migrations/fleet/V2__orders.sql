CREATE TABLE fleet_orders (id INT PRIMARY KEY, tenant_id INT);
-- rollback
DROP TABLE fleet_orders;
