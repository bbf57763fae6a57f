DROP TABLE idempotency_keys;
DROP TABLE feed_epochs;
