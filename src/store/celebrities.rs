//! Celebrity authors: who is published once (`author.<id>`) rather than once per follower, and
//! the switch that makes one. See the `celebrity_fanout` and `feed_log` migrations for
//! `users.celebrity_since` and `users.celebrity_seq`.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::events::{self, NewEvent};
use super::schema::{friendships, users};
use super::StoreError;

/// Switches `author_id` to celebrity, with its `celebrity` event: once the relay has numbered
/// that event, the author's later events go out once, routed `author.<id>`, and nodes route
/// that key to the author's online followers from the event's position on. Call it inside the
/// transaction of the follow that crossed the threshold. Returns whether the author is a
/// celebrity now (false only if it does not exist).
pub async fn switch(conn: &mut AsyncPgConnection, author_id: Uuid) -> Result<bool, StoreError> {
    let switched = diesel::update(
        users::table
            .find(author_id)
            .filter(users::celebrity_since.is_null()),
    )
    .set(users::celebrity_since.eq(diesel::dsl::now))
    .execute(conn)
    .await?;
    if switched == 1 {
        events::record(conn, NewEvent::celebrity(author_id)).await?;
    }
    Ok(switched == 1)
}

/// Makes every author with at least `threshold` followers a celebrity at once, with no switch:
/// only right while none of their followers is online (bulk imports, benchmarks). Returns how
/// many authors changed.
pub async fn mark_offline(
    conn: &mut AsyncPgConnection,
    threshold: i64,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        users::table
            .filter(users::celebrity_since.is_null())
            .filter(users::follower_count.ge(threshold)),
    )
    .set((
        users::celebrity_since.eq(diesel::dsl::now),
        users::celebrity_seq.eq(0),
    ))
    .execute(conn)
    .await?)
}

/// [`mark_offline`], for `among` only (a bulk load that must not touch other users).
pub async fn mark_offline_among(
    conn: &mut AsyncPgConnection,
    among: &[Uuid],
    threshold: i64,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        users::table
            .filter(users::id.eq_any(among))
            .filter(users::celebrity_since.is_null())
            .filter(users::follower_count.ge(threshold)),
    )
    .set((
        users::celebrity_since.eq(diesel::dsl::now),
        users::celebrity_seq.eq(0),
    ))
    .execute(conn)
    .await?)
}

/// The celebrities `user_id` follows: the `author.<id>` keys its sessions need.
pub async fn followed_by(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    Ok(friendships::table
        .inner_join(users::table.on(users::id.eq(friendships::friend_id)))
        .filter(friendships::user_id.eq(user_id))
        .filter(users::celebrity_since.is_not_null())
        .select(friendships::friend_id)
        .load(conn)
        .await?)
}
