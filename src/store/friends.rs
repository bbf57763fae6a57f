//! Queries on `friendships`: directed follow edges (each counted on the followed user's row,
//! and each written to the feed log with the change), and the follower pages the relay reads.

use diesel::dsl;
use diesel::prelude::*;
use diesel::result::DatabaseErrorKind;
use diesel::sql_types::{BigInt, Bool, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::events::{self, Kind, NewEvent};
use super::schema::friendships;
use super::StoreError;

/// What a follow or unfollow changed on the followed author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct FollowChange {
    #[diesel(sql_type = BigInt)]
    pub follower_count: i64,
    /// Whether the author is a celebrity (published once, `author.<id>`).
    #[diesel(sql_type = Bool)]
    pub celebrity: bool,
}

/// `user_id` follows `friend_id`: the edge, the count, the `follow` event and, for the follow
/// that brings the author to `celebrity_threshold` followers, the switch to celebrity (with its
/// event), in one transaction. `None` when the edge already existed (nothing changed);
/// [`StoreError::NoSuchUser`] when either user does not exist.
pub async fn follow(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    friend_id: Uuid,
    celebrity_threshold: i64,
) -> Result<Option<FollowChange>, StoreError> {
    conn.transaction::<_, StoreError, _>(async move |conn| {
        let change = change_edge(
            conn,
            "WITH changed AS (
                 INSERT INTO friendships (user_id, friend_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING RETURNING friend_id)
             UPDATE users SET follower_count = follower_count + 1",
            user_id,
            friend_id,
        )
        .await?;
        let Some(mut change) = change else {
            return Ok(None);
        };
        events::record(conn, NewEvent::edge(Kind::Follow, user_id, friend_id)).await?;
        if !change.celebrity && change.follower_count >= celebrity_threshold {
            change.celebrity = super::celebrities::switch(conn, friend_id).await?;
        }
        Ok(Some(change))
    })
    .await
}

/// `user_id` stops following `friend_id`, with its `unfollow` event. `None` when there was no
/// such edge.
pub async fn unfollow(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    friend_id: Uuid,
) -> Result<Option<FollowChange>, StoreError> {
    conn.transaction::<_, StoreError, _>(async move |conn| {
        let change = change_edge(
            conn,
            "WITH changed AS (
                 DELETE FROM friendships WHERE user_id = $1 AND friend_id = $2
                 RETURNING friend_id)
             UPDATE users SET follower_count = follower_count - 1",
            user_id,
            friend_id,
        )
        .await?;
        if change.is_some() {
            events::record(conn, NewEvent::edge(Kind::Unfollow, user_id, friend_id)).await?;
        }
        Ok(change)
    })
    .await
}

/// Runs a follow or unfollow given as `WITH changed AS (<edge change>) UPDATE users SET
/// <count change>`: the count moves in the same statement as the edge, and only when the edge
/// really changed.
async fn change_edge(
    conn: &mut AsyncPgConnection,
    edge_and_count: &str,
    user_id: Uuid,
    friend_id: Uuid,
) -> Result<Option<FollowChange>, StoreError> {
    diesel::sql_query(format!(
        "{edge_and_count}
          WHERE id IN (SELECT friend_id FROM changed)
         RETURNING follower_count, celebrity_since IS NOT NULL AS celebrity"
    ))
    .bind::<SqlUuid, _>(user_id)
    .bind::<SqlUuid, _>(friend_id)
    .get_result(conn)
    .await
    .optional()
    .map_err(|error| match error {
        diesel::result::Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            StoreError::NoSuchUser
        }
        other => StoreError::Query(other),
    })
}

/// Sets `follower_count` of `authors` from their friendships. herald keeps the count in the
/// follow statement itself; this is for rows bulk-loaded behind its back. Returns how many
/// authors have followers.
pub async fn recount_followers(
    conn: &mut AsyncPgConnection,
    authors: &[Uuid],
) -> Result<usize, StoreError> {
    Ok(diesel::sql_query(
        "UPDATE users u SET follower_count = c.n
           FROM (SELECT friend_id, count(*) AS n FROM friendships
                  WHERE friend_id = ANY($1) GROUP BY friend_id) c
          WHERE u.id = c.friend_id",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(authors)
    .execute(conn)
    .await?)
}

/// One page of `author_id`'s followers, in id order, strictly after `after` (keyset paging, so
/// a million followers stream in constant memory and each page is one range scan of
/// `friendships_followers_idx`). Start with `Uuid::nil()`: it sorts before every user id.
pub async fn followers_page(
    conn: &mut AsyncPgConnection,
    author_id: Uuid,
    after: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(followers_page_query(author_id, after, limit)
        .load(conn)
        .await?)
}

/// The follower page's query, separate so its plan can be checked as diesel really writes it.
#[dsl::auto_type(no_type_alias)]
pub fn followers_page_query(author_id: Uuid, after: Uuid, limit: i64) -> _ {
    friendships::table
        .filter(friendships::friend_id.eq(author_id))
        .filter(friendships::user_id.gt(after))
        .select(friendships::user_id)
        .order(friendships::user_id)
        .limit(limit)
}
