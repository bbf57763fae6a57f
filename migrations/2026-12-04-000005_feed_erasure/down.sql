DROP INDEX IF EXISTS feed_events_post_idx;
