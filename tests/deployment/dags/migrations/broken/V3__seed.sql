INSERT INTO customers (id, name) VALUES (1, 'Ada');
-- rollback
DELETE FROM customers WHERE id = 1;
