-- Runs once, when postgres-target's volume is first created (as the jetbase user, who owns it).
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS drift;
CREATE SCHEMA IF NOT EXISTS rollback_demo;
CREATE SCHEMA IF NOT EXISTS wait_demo;
CREATE SCHEMA IF NOT EXISTS fleet_eu;
CREATE SCHEMA IF NOT EXISTS fleet_us;
CREATE SCHEMA IF NOT EXISTS reviewed;
