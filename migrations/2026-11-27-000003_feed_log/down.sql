ALTER TABLE users ADD COLUMN celebrity_claimed_at TIMESTAMPTZ;
ALTER TABLE users DROP COLUMN celebrity_seq;
DROP TABLE feed_relay;
DROP TABLE feed_events;
