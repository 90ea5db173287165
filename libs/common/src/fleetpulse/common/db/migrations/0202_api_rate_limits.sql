-- Rate limits shared by every API replica (GCRA): one row per key holding its theoretical
-- arrival time. A request is allowed while tat - now stays within the burst tolerance; each
-- allowed request moves tat one emission interval on. Rows whose tat has passed carry no state
-- and are deleted now and then.
CREATE TABLE api_rate_limits (
    key text        PRIMARY KEY,
    tat timestamptz NOT NULL
);
CREATE INDEX api_rate_limits_tat ON api_rate_limits (tat);
