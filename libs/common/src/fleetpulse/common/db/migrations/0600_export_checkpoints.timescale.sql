-- Analytics export (services/exporter), TimescaleDB variant: reviewed against the plain one, it
-- differs only in chunk skipping for compressed chunks. An ingest transaction id on every
-- telemetry row and the exporter's checkpoints.
--
-- telemetry.ingest_xid is the id of the transaction that inserted the row. The exporter's
-- watermark is pg_snapshot_xmin(pg_current_snapshot()): every transaction below it has finished,
-- so the rows with ingest_xid below it are all visible now and no row below it can still appear.
-- Exporting [previous watermark, new watermark) therefore never skips a late-arriving reading
-- (device time is irrelevant) nor one whose transaction commits after a later one.
-- Rows from before this migration keep NULL and belong to the first export range.
-- Adding a nullable column and then a default rewrites nothing (also on compressed chunks).
ALTER TABLE telemetry ADD COLUMN ingest_xid bigint;
ALTER TABLE telemetry ALTER COLUMN ingest_xid SET DEFAULT (pg_current_xact_id()::text::bigint);
-- BRIN on the uncompressed chunks: rows land in insertion (roughly xid) order; costs ingest next
-- to nothing. Compressed chunks (older than 7 days) are skipped through per-chunk min/max ranges
-- of ingest_xid (chunk skipping, TimescaleDB 2.16+); without it an export range would decompress
-- them to look, so an older TimescaleDB only logs a notice and exports more slowly.
CREATE INDEX telemetry_ingest_xid ON telemetry USING brin (ingest_xid);
DO $$
BEGIN
    -- needs timescaledb.enable_chunk_skipping (off by default, a server setting the operator
    -- owns); an optimisation only, so any refusal (GUC off, older TimescaleDB) just logs
    PERFORM enable_chunk_skipping('telemetry', 'ingest_xid');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'chunk skipping unavailable (%): the exporter scans compressed chunks', SQLERRM;
END $$;

-- One row per exported stream ('events', 'telemetry'). done: the end of the last committed range
-- (events: a position, inclusive; telemetry: a watermark xid, exclusive). pending_until: the end
-- of the range being written, fixed before the first object is written so a restart rewrites the
-- same objects (their keys derive from the range) instead of writing new ones. committed_at:
-- when the last range was committed (the exporter waits for enough rows or enough time).
CREATE TABLE export_checkpoints (
    stream          text PRIMARY KEY,
    done            bigint      NOT NULL DEFAULT 0,
    pending_until   bigint,
    rows_per_file   int,
    files           bigint      NOT NULL DEFAULT 0,
    rows            bigint      NOT NULL DEFAULT 0,
    committed_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
