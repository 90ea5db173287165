-- dispatcher: Alertmanager's meaning of repeat_interval_s and group_interval_s.
--
-- group_interval_s: how long a group that was notified waits before notifying about alerts
-- that joined it since (NULL: 0, at once). repeat_interval_s now means: re-send the group's
-- firing notification every repeat_interval_s while any of its notified alerts still fires.
ALTER TABLE routes ADD COLUMN group_interval_s int;

-- A group's alerts already notified and still firing (what a repeat lists); ``pending`` keeps
-- the alerts that joined since the last notification.
ALTER TABLE dispatch_groups ADD COLUMN firing jsonb NOT NULL DEFAULT '[]'::jsonb;

-- A repeat notification is a new delivery for the same lead alert event: "once per (alert
-- event, integration)" holds for the other notifications only.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_once_per_event;
CREATE UNIQUE INDEX deliveries_once_per_event ON deliveries (alert_event_id, integration_id)
    WHERE notification_type IS DISTINCT FROM 'repeat';
