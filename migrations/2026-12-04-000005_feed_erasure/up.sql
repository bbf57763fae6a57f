-- Editing or deleting a post erases its earlier text from the feed log, in the same transaction
-- (no replay may carry text its author has since changed or deleted): those writes find the
-- post's earlier events by this index instead of scanning the log.
CREATE INDEX feed_events_post_idx ON feed_events (post_id) WHERE post_id IS NOT NULL;
