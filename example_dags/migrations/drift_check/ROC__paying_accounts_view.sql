-- Re-created whenever this file changes (runs-on-change).
DROP VIEW IF EXISTS paying_accounts;
CREATE VIEW paying_accounts AS SELECT id, email FROM accounts WHERE plan <> 'free';
