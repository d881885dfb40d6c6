CREATE TABLE invoices (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    amount_cents INTEGER NOT NULL,
    issued_on VARCHAR(10) NOT NULL,
    CONSTRAINT fk_invoices_account FOREIGN KEY (account_id) REFERENCES accounts (id)
);
CREATE INDEX ix_invoices_issued_on ON invoices (issued_on);

-- rollback
DROP TABLE invoices;
