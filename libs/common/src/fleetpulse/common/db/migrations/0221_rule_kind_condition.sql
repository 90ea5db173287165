-- provision_api: rules of kind 'condition' (all/any of conditions, issue 19); their conditions
-- and schedule live in rules.definition like the other kinds' fields.
ALTER TABLE rules DROP CONSTRAINT IF EXISTS rules_kind_check;
ALTER TABLE rules ADD CONSTRAINT rules_kind_check
    CHECK (kind IN ('threshold', 'no_data', 'condition'));
