CREATE TABLE event_counts (
    name VARCHAR(100) PRIMARY KEY,
    seen INTEGER NOT NULL
);

-- rollback
DROP TABLE event_counts;
