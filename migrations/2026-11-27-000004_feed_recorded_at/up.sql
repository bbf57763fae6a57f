-- When each feed event was recorded: the clock at its insert, the last statement before its
-- transaction commits (`created_at` is the transaction's start). The relay stamps it on the
-- event's messages, so latency is measured from the write, not from when the relay read it.
-- Nullable with a default set separately: existing rows keep NULL (read as `created_at`) and
-- the table is not rewritten.
ALTER TABLE feed_events ADD COLUMN recorded_at TIMESTAMPTZ;
ALTER TABLE feed_events ALTER COLUMN recorded_at SET DEFAULT clock_timestamp();
