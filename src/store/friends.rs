//! Queries on `friendships`: directed follow edges, and the follower pages the fan-out reads.

use diesel::dsl;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::friendships;
use super::StoreError;

/// `user_id` follows `friend_id`; following twice is a no-op.
pub async fn follow(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    friend_id: Uuid,
) -> Result<(), StoreError> {
    diesel::insert_into(friendships::table)
        .values((
            friendships::user_id.eq(user_id),
            friendships::friend_id.eq(friend_id),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// `user_id` stops following `friend_id`; unfollowing a stranger is a no-op.
pub async fn unfollow(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    friend_id: Uuid,
) -> Result<(), StoreError> {
    diesel::delete(friendships::table.find((user_id, friend_id)))
        .execute(conn)
        .await?;
    Ok(())
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
