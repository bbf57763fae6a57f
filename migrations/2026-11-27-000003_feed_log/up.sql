-- The feed log (a transactional outbox). Every post create, update and delete, every follow and
-- unfollow, and every switch of an author to celebrity writes one row here in the same
-- transaction as the change itself, so a committed write always has its event, whatever
-- RabbitMQ is doing.
--
-- `id` is taken at insert, so two writers can commit out of `id` order. `seq`, the position
-- clients see, is given later by the one relay that holds the advisory lock, to committed rows
-- only, in one transaction per batch: a client that has seen position N never later needs an
-- event below N. (Writers lock their author's `users` row first, so a post and a follow of the
-- same author are inserted in the order they commit.)
CREATE TABLE feed_events (
    id          BIGSERIAL PRIMARY KEY,
    seq         BIGINT UNIQUE,
    -- The author whose followers the event concerns (for a follow: the followed author).
    author_id   UUID NOT NULL,
    -- post.created | post.updated | post.deleted | follow | unfollow | celebrity
    kind        TEXT NOT NULL,
    -- follow and unfollow: who follows.
    follower_id UUID,
    post_id     UUID,
    post_text   TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The relay's queue: committed rows not numbered yet, in insert order.
CREATE INDEX feed_events_unnumbered_idx ON feed_events (id) WHERE seq IS NULL;
-- Resume: an author's events after a position.
CREATE INDEX feed_events_author_seq_idx ON feed_events (author_id, seq) WHERE seq IS NOT NULL;

-- The relay's state, one row: the last position given out, the last one whose publishing the
-- broker confirmed, and the highest position pruned (a resume from below it cannot be served).
CREATE TABLE feed_relay (
    id             SMALLINT PRIMARY KEY CHECK (id = 1),
    numbered_seq   BIGINT NOT NULL,
    published_seq  BIGINT NOT NULL,
    pruned_seq     BIGINT NOT NULL
);
INSERT INTO feed_relay VALUES (1, 0, 0, 0);

-- The position of an author's switch to celebrity: events after it go out once, routed
-- `author.<id>`; events before it, one per follower. Authors that were celebrities before the
-- log existed switched "before position 1".
ALTER TABLE users ADD COLUMN celebrity_seq BIGINT;
UPDATE users SET celebrity_since = now(), celebrity_seq = 0 WHERE celebrity_since IS NOT NULL;
-- The switch no longer needs a claim: it is written with the follow that makes it.
ALTER TABLE users DROP COLUMN celebrity_claimed_at;
