INSERT INTO fleet_tenants (id, name) VALUES (1, 'Ada');
-- rollback
DELETE FROM fleet_tenants WHERE id = 1;
