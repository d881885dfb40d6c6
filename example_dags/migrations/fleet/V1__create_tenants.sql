-- The same migrations for every database of the fleet (one per tenant, region or environment).
CREATE TABLE tenants (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL);

-- rollback
DROP TABLE tenants;
