ALTER TABLE watched ADD COLUMN note VARCHAR(20);
-- rollback
ALTER TABLE watched DROP COLUMN note;
