CREATE TABLE fleet_tenants (id INT PRIMARY KEY, name VARCHAR(100));
-- rollback
DROP TABLE fleet_tenants;
