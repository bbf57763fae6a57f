ALTER TABLE users DROP COLUMN celebrity_claimed_at;
ALTER TABLE users DROP COLUMN celebrity_since;
ALTER TABLE users DROP COLUMN follower_count;
