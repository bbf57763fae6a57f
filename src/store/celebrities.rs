//! Celebrity authors: who is published once (`author.<id>`) rather than once per follower, and
//! the follower counts that decide it. See the `celebrity_fanout` migration for the states of
//! `users.celebrity_since`.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{friendships, users};
use super::StoreError;

/// How an author's events are published right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// One message per follower, routed `user.<follower>`.
    PerFollower,
    /// One message, routed `author.<id>`.
    Once,
}

/// How `author_id`'s events go out now (an unknown author has no followers to reach).
pub async fn publish_mode(
    conn: &mut AsyncPgConnection,
    author_id: Uuid,
) -> Result<PublishMode, StoreError> {
    let once: Option<Option<bool>> = users::table
        .find(author_id)
        .select(users::celebrity_since.le(diesel::dsl::now).nullable())
        .get_result(conn)
        .await
        .optional()?;
    Ok(match once.flatten() {
        Some(true) => PublishMode::Once,
        _ => PublishMode::PerFollower,
    })
}

/// The `celebrity_since` of an author whose switch to celebrity is under way (claimed, not yet
/// done): a timestamp no real switch time can equal.
pub const SWITCHING: &str = "'infinity'";

/// A switch claimed this long ago and still not done is taken to have died with its node.
pub const STALE_CLAIM: Duration = Duration::from_secs(600);

/// Claims the switch of `author_id` to celebrity, if it has at least `threshold` followers and
/// is not one yet (or its switch went stale, see [`STALE_CLAIM`]): nodes start routing
/// `author.<id>` now, events stay per follower until [`switch_at`]. True for the one caller
/// that should run the switch.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    author_id: Uuid,
    threshold: i64,
) -> Result<bool, StoreError> {
    let claimed = diesel::sql_query(format!(
        "UPDATE users SET celebrity_since = {SWITCHING}, celebrity_claimed_at = now()
          WHERE id = $1 AND follower_count >= $2
            AND (celebrity_since IS NULL
                 OR (celebrity_since = {SWITCHING}
                     AND celebrity_claimed_at < now() - make_interval(secs => $3::bigint)))"
    ))
    .bind::<SqlUuid, _>(author_id)
    .bind::<BigInt, _>(threshold)
    .bind::<BigInt, _>(i64::try_from(STALE_CLAIM.as_secs()).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(claimed == 1)
}

/// Calls off a switch that could not tell every follower's node: the author stays published
/// per follower until a later follow claims the switch again.
pub async fn unclaim(conn: &mut AsyncPgConnection, author_id: Uuid) -> Result<(), StoreError> {
    diesel::sql_query(format!(
        "UPDATE users SET celebrity_since = NULL WHERE id = $1 AND celebrity_since = {SWITCHING}"
    ))
    .bind::<SqlUuid, _>(author_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends a switch: `author_id`'s events go out once from `delay` after now.
pub async fn switch_at(
    conn: &mut AsyncPgConnection,
    author_id: Uuid,
    delay: Duration,
) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE users SET celebrity_since = now() + make_interval(secs => $2::bigint / 1000.0)
          WHERE id = $1",
    )
    .bind::<SqlUuid, _>(author_id)
    .bind::<BigInt, _>(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
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
    .set(users::celebrity_since.eq(diesel::dsl::now))
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
    .set(users::celebrity_since.eq(diesel::dsl::now))
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
