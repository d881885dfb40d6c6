-- A reviewer sees the lint findings of this file in the approval's body.
ALTER TABLE customers ADD COLUMN tier VARCHAR(20);
-- jetbase-lint: allow update-without-where
UPDATE customers SET tier = 'standard';

-- rollback
ALTER TABLE customers DROP COLUMN tier;
