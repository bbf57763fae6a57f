-- Celebrity fan-out. An author with many followers is published once, with routing key
-- `author.<id>`, instead of once per follower. Deciding that per post must not count a million
-- rows, so the follower count is kept on the user row, in the same transaction as each follow.
ALTER TABLE users ADD COLUMN follower_count BIGINT NOT NULL DEFAULT 0;

-- NULL: events go to each follower (`user.<follower>`). Otherwise nodes already bind
-- `author.<id>` for this author's online followers; once `celebrity_since <= now()` each event is
-- published once to `author.<id>`. 'infinity' marks an author whose switch is under way.
ALTER TABLE users ADD COLUMN celebrity_since TIMESTAMPTZ;

-- When the switch under way was claimed: a switch whose node died with it can be claimed again
-- once it is long stale.
ALTER TABLE users ADD COLUMN celebrity_claimed_at TIMESTAMPTZ;

UPDATE users u
   SET follower_count = c.n
  FROM (SELECT friend_id, count(*) AS n FROM friendships GROUP BY friend_id) c
 WHERE u.id = c.friend_id;
