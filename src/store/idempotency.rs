//! Idempotent writes (the `idempotency_keys` table, see the `failover` migration): a write sent
//! with an `Idempotency-Key` runs in one transaction with the record of its outcome, so a
//! repeat by the same user with the same key (after a 503, a lost connection, a crashed
//! database) finds the outcome and writes nothing again. Keys are per user; a record older than
//! the configured lifetime is forgotten (and pruned).

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, SmallInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::StoreError;

/// What a write answered, as it is kept for repeats: its HTTP status and its body (a JSON body
/// for a success, the message for a refusal).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Outcome {
    #[diesel(sql_type = SmallInt)]
    pub status: i16,
    #[diesel(sql_type = Text)]
    pub body: String,
}

/// A write to run once per key: it gets the transaction's connection.
pub type Write = Box<
    dyn for<'c> FnOnce(&'c mut AsyncPgConnection) -> BoxFuture<'c, Result<Outcome, StoreError>>
        + Send,
>;

/// What running a write under a key came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Once {
    /// The write ran now (and its outcome is kept).
    Ran(Outcome),
    /// The key was used before for the same request: its first outcome, nothing written.
    Repeated(Outcome),
    /// The key was used before for a different request: nothing written.
    KeyReused,
}

/// One use of a key: by whom, the key, and a fingerprint of the request.
pub struct KeyUse<'a> {
    pub user_id: Uuid,
    pub key: &'a str,
    pub fingerprint: &'a str,
    /// How long an outcome is kept.
    pub ttl: Duration,
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Bool)]
    claimed: bool,
}

#[derive(QueryableByName)]
struct Kept {
    #[diesel(sql_type = Text)]
    fingerprint: String,
    #[diesel(sql_type = SmallInt)]
    status: i16,
    #[diesel(sql_type = Text)]
    body: String,
}

fn ttl_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
}

/// Runs `write` unless `key_use`'s key already has an outcome. One transaction: the key is
/// claimed (a concurrent request with the same key waits for this one to end, then finds its
/// outcome), the write runs (nested: a savepoint), and its outcome is recorded. If anything
/// fails, nothing is kept, so the next repeat runs the write.
pub async fn run_once(
    conn: &mut AsyncPgConnection,
    key_use: KeyUse<'_>,
    write: Write,
) -> Result<Once, StoreError> {
    let (user_id, key) = (key_use.user_id, key_use.key.to_owned());
    let fingerprint = key_use.fingerprint.to_owned();
    let ttl = ttl_secs(key_use.ttl);
    conn.transaction::<_, StoreError, _>(async move |conn| {
        diesel::sql_query(
            "DELETE FROM idempotency_keys
              WHERE user_id = $1 AND key = $2 AND created_at < now() - make_interval(secs => $3)",
        )
        .bind::<SqlUuid, _>(user_id)
        .bind::<Text, _>(&key)
        .bind::<BigInt, _>(ttl)
        .execute(conn)
        .await?;
        let claimed: Option<Claimed> = diesel::sql_query(
            "INSERT INTO idempotency_keys (user_id, key, fingerprint, status, body)
             VALUES ($1, $2, $3, 0, '') ON CONFLICT DO NOTHING RETURNING true AS claimed",
        )
        .bind::<SqlUuid, _>(user_id)
        .bind::<Text, _>(&key)
        .bind::<Text, _>(&fingerprint)
        .get_result(conn)
        .await
        .optional()?;
        if claimed.is_none_or(|claimed| !claimed.claimed) {
            let kept: Kept = diesel::sql_query(
                "SELECT fingerprint, status, body FROM idempotency_keys
                  WHERE user_id = $1 AND key = $2",
            )
            .bind::<SqlUuid, _>(user_id)
            .bind::<Text, _>(&key)
            .get_result(conn)
            .await?;
            return Ok(if kept.fingerprint == fingerprint {
                Once::Repeated(Outcome {
                    status: kept.status,
                    body: kept.body,
                })
            } else {
                Once::KeyReused
            });
        }
        let outcome = write(conn).await?;
        diesel::sql_query(
            "UPDATE idempotency_keys SET status = $3, body = $4 WHERE user_id = $1 AND key = $2",
        )
        .bind::<SqlUuid, _>(user_id)
        .bind::<Text, _>(&key)
        .bind::<SmallInt, _>(outcome.status)
        .bind::<Text, _>(&outcome.body)
        .execute(conn)
        .await?;
        Ok(Once::Ran(outcome))
    })
    .await
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Deletes up to `batch` outcomes older than `ttl`; returns how many.
pub async fn prune(
    conn: &mut AsyncPgConnection,
    ttl: Duration,
    batch: i64,
) -> Result<i64, StoreError> {
    let pruned: Count = diesel::sql_query(
        "WITH doomed AS (
             SELECT user_id, key FROM idempotency_keys
              WHERE created_at < now() - make_interval(secs => $1)
              ORDER BY created_at LIMIT $2),
         gone AS (
             DELETE FROM idempotency_keys k USING doomed
              WHERE k.user_id = doomed.user_id AND k.key = doomed.key RETURNING 1)
         SELECT count(*) AS count FROM gone",
    )
    .bind::<BigInt, _>(ttl_secs(ttl))
    .bind::<BigInt, _>(batch)
    .get_result(conn)
    .await?;
    Ok(pruned.count)
}
