-- Users: UUID ids, profile fields and an argon2id password hash (PHC string).
CREATE TABLE users (
    id            UUID PRIMARY KEY,
    first_name    TEXT NOT NULL,
    second_name   TEXT NOT NULL,
    birthdate     DATE NOT NULL,
    biography     TEXT NOT NULL DEFAULT '',
    city          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- /user/search is a case-insensitive prefix match on both names: text_pattern_ops lets
-- `lower(col) LIKE 'prefix%'` use a btree range scan instead of a sequential scan.
CREATE INDEX users_name_prefix_idx
    ON users (lower(first_name) text_pattern_ops, lower(second_name) text_pattern_ops);

-- Login tokens are stored only as SHA-256 hashes of the random token the client holds.
CREATE TABLE login_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_tokens_user_idx ON login_tokens (user_id, expires_at);

-- Directed friendship: user_id follows friend_id. The primary key serves "whom do I follow"
-- (the feed); the reverse index serves "who follows this author" (the fan-out).
CREATE TABLE friendships (
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    friend_id  UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, friend_id),
    CHECK (user_id <> friend_id)
);
CREATE INDEX friendships_followers_idx ON friendships (friend_id, user_id);

-- Posts have UUID v7 ids, so id order is creation order: the feed reads newest-first
-- straight off (author_id, id DESC).
CREATE TABLE posts (
    id         UUID PRIMARY KEY,
    author_id  UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX posts_author_feed_idx ON posts (author_id, id DESC);
