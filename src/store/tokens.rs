//! Queries on `login_tokens`. Only SHA-256 hashes of tokens are stored or compared.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::login_tokens;
use super::StoreError;

/// Stores a new token hash and drops the user's expired ones, so the table does not grow forever.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    user_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::delete(
        login_tokens::table
            .filter(login_tokens::user_id.eq(user_id))
            .filter(login_tokens::expires_at.le(Utc::now())),
    )
    .execute(conn)
    .await?;
    diesel::insert_into(login_tokens::table)
        .values((
            login_tokens::token_hash.eq(token_hash),
            login_tokens::user_id.eq(user_id),
            login_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The user a token belongs to, if the token exists and has not expired.
pub async fn user_for(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> Result<Option<Uuid>, StoreError> {
    Ok(login_tokens::table
        .find(token_hash)
        .filter(login_tokens::expires_at.gt(Utc::now()))
        .select(login_tokens::user_id)
        .first(conn)
        .await
        .optional()?)
}

#[derive(QueryableByName)]
struct GrantRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    user_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    expires_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    head: Option<i64>,
}

/// What a token grants a feed session, if it exists and has not expired: its user, when it
/// expires, and the feed log's head as of the same snapshot (`events::head`, read with it so
/// that a connect pays one round trip for both).
pub async fn grant_for(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> Result<Option<(Uuid, DateTime<Utc>, Option<i64>)>, StoreError> {
    let row: Option<GrantRow> = diesel::sql_query(
        "SELECT user_id, expires_at,
                (SELECT numbered_seq FROM feed_relay WHERE id = 1) AS head
           FROM login_tokens
          WHERE token_hash = $1 AND expires_at > $2",
    )
    .bind::<diesel::sql_types::Bytea, _>(token_hash)
    .bind::<diesel::sql_types::Timestamptz, _>(Utc::now())
    .get_result(conn)
    .await
    .optional()?;
    Ok(row.map(|row| (row.user_id, row.expires_at, row.head)))
}

/// Revokes a token (`POST /logout`): from now on it authenticates nothing, on any instance.
pub async fn revoke(conn: &mut AsyncPgConnection, token_hash: &[u8]) -> Result<(), StoreError> {
    diesel::delete(login_tokens::table.find(token_hash))
        .execute(conn)
        .await?;
    Ok(())
}

/// Which of `token_hashes` are still live (present and unexpired): one query for a whole
/// batch of open sessions' tokens.
pub async fn still_live(
    conn: &mut AsyncPgConnection,
    token_hashes: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(login_tokens::table
        .filter(login_tokens::token_hash.eq_any(token_hashes))
        .filter(login_tokens::expires_at.gt(Utc::now()))
        .select(login_tokens::token_hash)
        .load(conn)
        .await?)
}
