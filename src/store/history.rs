//! Reading the feed log back for one session: the post events after a position from every
//! author its user follows, within the history bounds, or the verdict that the gap cannot be
//! filled (`feed.reset`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::events::{relay_state_positions, LoggedEvent};
use super::StoreError;

/// How far back a resume may reach.
#[derive(Debug, Clone, Copy)]
pub struct HistoryBounds {
    pub max_events: i64,
    pub ttl: Duration,
}

/// A gap, filled from the log or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum History {
    /// The events after the position, in order.
    Events(Vec<LoggedEvent>),
    /// The gap cannot be filled (too long, too old, or a position this log never gave out):
    /// the client reloads and continues from this position.
    Reset(i64),
}

#[derive(QueryableByName)]
struct Oldest {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    created_at: Option<DateTime<Utc>>,
}

/// The post events after `after` from every author `user_id` follows now, in position order.
/// With `bounds`, a gap longer or older than they allow (or a position not given out yet, or
/// pruned) is a [`History::Reset`]. One snapshot (repeatable read) serves the bound checks and
/// the read, so a prune in between cannot cut the gap it accepted.
pub async fn history(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    after: i64,
    bounds: Option<HistoryBounds>,
) -> Result<History, StoreError> {
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run::<_, StoreError, _>(async move |conn| history_in(conn, user_id, after, bounds).await)
        .await
}

async fn history_in(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    after: i64,
    bounds: Option<HistoryBounds>,
) -> Result<History, StoreError> {
    let limit = bounds.map_or(i64::MAX, |b| b.max_events.saturating_add(1));
    let Some(bounds) = bounds else {
        return Ok(History::Events(
            history_query(user_id, after, limit).load(conn).await?,
        ));
    };
    let state = relay_state_positions(conn).await?;
    if after > state.numbered_seq || after < state.pruned_seq {
        return Ok(History::Reset(state.numbered_seq));
    }
    // A position of a history this log no longer has (see `epochs`).
    if super::epochs::in_skipped_range(conn, after).await? {
        return Ok(History::Reset(state.numbered_seq));
    }
    let oldest: Oldest = diesel::sql_query(
        "SELECT (SELECT created_at FROM feed_events WHERE seq > $1 ORDER BY seq LIMIT 1)
                AS created_at",
    )
    .bind::<BigInt, _>(after)
    .get_result(conn)
    .await?;
    let ttl = chrono::Duration::from_std(bounds.ttl).unwrap_or(chrono::Duration::MAX);
    if oldest.created_at.is_some_and(|at| at < Utc::now() - ttl) {
        return Ok(History::Reset(state.numbered_seq));
    }
    let events: Vec<LoggedEvent> = history_query(user_id, after, limit).load(conn).await?;
    if events.len() as i64 > bounds.max_events {
        return Ok(History::Reset(state.numbered_seq));
    }
    Ok(History::Events(events))
}

/// The post events after `after` from every author `user_id` follows, in position order, in
/// one statement and without the bound checks of [`history`]: for a position herald itself read
/// moments ago (a new session's first fill), which is inside the bounds by construction. `None`
/// when there are more than `max_events` (then [`history`] decides).
pub async fn recent(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    after: i64,
    max_events: i64,
) -> Result<Option<Vec<LoggedEvent>>, StoreError> {
    let limit = max_events.saturating_add(1);
    let events: Vec<LoggedEvent> = history_query(user_id, after, limit).load(conn).await?;
    Ok((events.len() as i64 <= max_events).then_some(events))
}

/// The resume query, separate so its plan can be checked: for each author the user follows, an
/// index range scan of `feed_events_author_seq_idx` after the position.
pub fn history_query(
    user_id: Uuid,
    after: i64,
    limit: i64,
) -> diesel::query_builder::BoxedSqlQuery<'static, diesel::pg::Pg, diesel::query_builder::SqlQuery>
{
    diesel::sql_query(
        "SELECT e.seq, e.kind, e.author_id, e.follower_id, e.post_id, e.post_text
           FROM friendships f
           JOIN feed_events e ON e.author_id = f.friend_id AND e.seq > $2
          WHERE f.user_id = $1
            AND e.kind IN ('post.created', 'post.updated', 'post.deleted')
          ORDER BY e.seq LIMIT $3",
    )
    .into_boxed()
    .bind::<SqlUuid, _>(user_id)
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(limit)
}
