CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    email VARCHAR(255) NOT NULL,
    plan VARCHAR(20) DEFAULT 'free' NOT NULL
);
CREATE UNIQUE INDEX ux_accounts_email ON accounts (email);

-- rollback
DROP TABLE accounts;
