ALTER TABLE users DROP COLUMN celebrity_since;
ALTER TABLE users DROP COLUMN follower_count;
