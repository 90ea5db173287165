-- provision_api: device attributes (DeviceUpdated {attributes}), read by rules through
-- threshold_from: "attributes.<key>" and by the evaluator's catalog refresh.
ALTER TABLE devices ADD COLUMN IF NOT EXISTS attributes jsonb NOT NULL DEFAULT '{}'::jsonb;
