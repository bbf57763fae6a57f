-- Failover (see docs/FAILOVER.md).
--
-- The feed log's epochs: one row per history of the log. A row is written by the relay when it
-- first numbers on a server whose identity (system identifier and WAL timeline) differs from
-- the newest row's: a promoted standby, a restored backup. Such a server may lack commits the
-- old one had numbered and published, so numbering jumps from `branched_at` (the last position
-- this server has) to `base`: positions in (branched_at, base] are never given out here, and a
-- client that names one gets `feed.reset`.
CREATE TABLE feed_epochs (
    id                BIGSERIAL PRIMARY KEY,
    system_identifier BIGINT NOT NULL,
    timeline          BIGINT NOT NULL,
    branched_at       BIGINT NOT NULL,
    base              BIGINT NOT NULL CHECK (base >= branched_at),
    started_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Authenticated writes sent with an `Idempotency-Key`: the first outcome of each (user, key),
-- written in the write's own transaction, so a repeat (after a 503, a lost connection, a crash)
-- returns it instead of writing again. Rows older than `http.idempotency_ttl_secs` are ignored
-- and pruned. `fingerprint` is a hash of the request (method, path, body): a key reused for
-- another request is refused. `body` is the answer's body (a post's id, an error's message),
-- never a post's text.
CREATE TABLE idempotency_keys (
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      SMALLINT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
