-- evaluator: every batch rewrites the watermark row of each of its devices (about 100 updates
-- per device per second at 100,000 readings/s), which autovacuum cannot keep up with. With full
-- pages each new row version went to another page and into the primary key index too (most
-- updates were not HOT), bloating the table tenfold and making the 1,000-row upsert of a batch
-- 20-40 ms. Spare room on each page keeps the updates HOT (no index entry, pruned in place).
-- Existing pages get the room as they are rewritten (or on the next VACUUM FULL).
ALTER TABLE evaluator_devices SET (
    fillfactor = 10,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_cost_delay = 0
);
