ALTER TABLE feed_events DROP COLUMN recorded_at;
