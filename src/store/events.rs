//! The feed log (`feed_events`, see the `feed_log` migration): events written in the same
//! transaction as their change, numbered by the relay in commit order, read back in position
//! order to publish them, and pruned when old. Reading it back for a session's gap is
//! `store::history`.

use std::time::Duration;

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::Untyped;
use diesel::sql_types::{BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::StoreError;

/// The PostgreSQL channel each instance's notifier (`realtime::relay`) sends a `NOTIFY` on after
/// its writes commit, and every relay listens on, so the leading one wakes at once. A tool that
/// writes the log outside herald may `NOTIFY herald_feed` after its commit; without it, its
/// events are relayed within the relay's one-second idle tick.
pub const NOTIFY_CHANNEL: &str = "herald_feed";

/// The advisory lock the relaying instance holds (any fixed 64-bit number will do; this one
/// spells "herald" in ASCII).
pub const RELAY_LOCK: i64 = 0x6865_7261_6c64;

/// What happened, as the log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PostCreated,
    PostUpdated,
    PostDeleted,
    Follow,
    Unfollow,
    /// The author switched to celebrity: later events go out once, routed `author.<id>`.
    Celebrity,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PostCreated => "post.created",
            Kind::PostUpdated => "post.updated",
            Kind::PostDeleted => "post.deleted",
            Kind::Follow => "follow",
            Kind::Unfollow => "unfollow",
            Kind::Celebrity => "celebrity",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Some(match text {
            "post.created" => Kind::PostCreated,
            "post.updated" => Kind::PostUpdated,
            "post.deleted" => Kind::PostDeleted,
            "follow" => Kind::Follow,
            "unfollow" => Kind::Unfollow,
            "celebrity" => Kind::Celebrity,
            _ => return None,
        })
    }

    /// Whether sessions see it (the others change routing only).
    pub fn is_post(self) -> bool {
        matches!(
            self,
            Kind::PostCreated | Kind::PostUpdated | Kind::PostDeleted
        )
    }
}

/// An event to write with its change.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub kind: Kind,
    pub author_id: Uuid,
    pub follower_id: Option<Uuid>,
    pub post_id: Option<Uuid>,
    pub post_text: Option<&'a str>,
}

impl<'a> NewEvent<'a> {
    pub fn post(kind: Kind, author_id: Uuid, post_id: Uuid, text: Option<&'a str>) -> Self {
        NewEvent {
            kind,
            author_id,
            follower_id: None,
            post_id: Some(post_id),
            post_text: text,
        }
    }

    pub fn edge(kind: Kind, follower_id: Uuid, author_id: Uuid) -> Self {
        NewEvent {
            kind,
            author_id,
            follower_id: Some(follower_id),
            post_id: None,
            post_text: None,
        }
    }

    pub fn celebrity(author_id: Uuid) -> Self {
        NewEvent {
            kind: Kind::Celebrity,
            author_id,
            follower_id: None,
            post_id: None,
            post_text: None,
        }
    }
}

/// Writes `event`. Call it inside the transaction of the change it records, and wake the relay
/// after that commits (`Relay::nudge`): the write takes no `NOTIFY` lock of its own.
///
/// A post event first locks its author's user row (`FOR SHARE`) until the transaction ends;
/// follows, unfollows and switches already hold that row through their follower-count update.
/// So a post and a routing change of the same author never overlap, and their events are
/// inserted (and numbered) in the order they commit.
pub async fn record(conn: &mut AsyncPgConnection, event: NewEvent<'_>) -> Result<(), StoreError> {
    RecordEvent {
        kind: event.kind.as_str(),
        is_post: event.kind.is_post(),
        event,
    }
    .execute(conn)
    .await?;
    Ok(())
}

/// `record`'s statement, as a query each connection prepares once (it is on every write's
/// path). One statement, one round trip: the aggregate over `author` takes the lock (for a
/// post) before the insert's one row is produced.
struct RecordEvent<'a> {
    event: NewEvent<'a>,
    /// Bound as text and bool (the binds must outlive the pass).
    kind: &'static str,
    is_post: bool,
}

impl QueryId for RecordEvent<'_> {
    type QueryId = RecordEvent<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for RecordEvent<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let event = &self.event;
        out.push_sql("WITH author AS (SELECT 1 FROM users WHERE id = ");
        out.push_bind_param::<SqlUuid, _>(&event.author_id)?;
        out.push_sql(" AND ");
        out.push_bind_param::<diesel::sql_types::Bool, _>(&self.is_post)?;
        out.push_sql(
            " FOR SHARE)
             INSERT INTO feed_events (author_id, kind, follower_id, post_id, post_text)
             SELECT ",
        );
        out.push_bind_param::<SqlUuid, _>(&event.author_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(&self.kind)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<SqlUuid>, _>(&event.follower_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<SqlUuid>, _>(&event.post_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&event.post_text)?;
        out.push_sql(" FROM (SELECT count(*) FROM author) locked");
        Ok(())
    }
}

/// One numbered event, as the relay publishes it and a resume replays it.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct LoggedEvent {
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = SqlUuid)]
    pub author_id: Uuid,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub follower_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub post_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Text>)]
    pub post_text: Option<String>,
}

/// A numbered event with what the relay needs to route it.
#[derive(Debug, Clone, QueryableByName)]
pub struct RelayedEvent {
    #[diesel(embed)]
    pub event: LoggedEvent,
    /// The position of the author's switch to celebrity, if numbered yet.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub celebrity_seq: Option<i64>,
    /// When the event was recorded (just before its transaction committed), in microseconds
    /// since the Unix epoch: where its latency is measured from.
    #[diesel(sql_type = BigInt)]
    pub recorded_us: i64,
}

impl RelayedEvent {
    /// Whether this event goes out once, routed `author.<id>`: the author had switched to
    /// celebrity at an earlier position.
    pub fn once(&self) -> bool {
        self.celebrity_seq.is_some_and(|at| at < self.event.seq)
    }
}

/// The relay's positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub struct RelayState {
    /// The last position given out: the feed's current position.
    #[diesel(sql_type = BigInt)]
    pub numbered_seq: i64,
    /// The last position whose publishing the broker confirmed.
    #[diesel(sql_type = BigInt)]
    pub published_seq: i64,
    /// Positions up to here may have been pruned.
    #[diesel(sql_type = BigInt)]
    pub pruned_seq: i64,
    /// Committed events not numbered yet.
    #[diesel(sql_type = BigInt)]
    pub unnumbered: i64,
}

impl RelayState {
    /// Events committed whose publishing is not confirmed yet.
    pub fn lag(&self) -> i64 {
        self.unnumbered + (self.numbered_seq - self.published_seq).max(0)
    }
}

pub async fn relay_state(conn: &mut AsyncPgConnection) -> Result<RelayState, StoreError> {
    Ok(diesel::sql_query(
        "SELECT numbered_seq, published_seq, pruned_seq,
                (SELECT count(*) FROM feed_events WHERE seq IS NULL) AS unnumbered
           FROM feed_relay WHERE id = 1",
    )
    .get_result(conn)
    .await?)
}

#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

/// The feed's current position: every event at or below it is committed and in the log.
pub async fn head(conn: &mut AsyncPgConnection) -> Result<i64, StoreError> {
    let head: Position =
        diesel::sql_query("SELECT numbered_seq AS seq FROM feed_relay WHERE id = 1")
            .get_result(conn)
            .await?;
    Ok(head.seq)
}

#[derive(QueryableByName)]
struct Held {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    held: bool,
}

/// Tries to become the relaying instance: true if this connection now holds the relay lock
/// (until it closes).
pub async fn try_lead(conn: &mut AsyncPgConnection) -> Result<bool, StoreError> {
    let held: Held = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS held")
        .bind::<BigInt, _>(RELAY_LOCK)
        .get_result(conn)
        .await?;
    Ok(held.held)
}

/// Numbers up to `limit` committed events, in insert order, and returns them, in one
/// statement (so one transaction and one round trip: this is on every event's path): positions
/// continue from the last one given out, and an author's switch to celebrity records its
/// position. Only the holder of the relay lock may call it. Returns what it numbered, in
/// position order, each with its author's switch position as of the end of the statement.
///
/// Only committed rows are visible, and a row committed after this batch is numbered in a later
/// one, so a client that has seen position N never later needs an event below N. Insert order
/// is commit order wherever it matters: every write locks its author's `users` row before it
/// records its event (a post `FOR SHARE`, a follow or unfollow by updating the follower count),
/// so a post and a routing change of the same author never overlap, and a post committed after
/// a follow always has the higher position.
pub async fn number_batch(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> Result<Vec<RelayedEvent>, StoreError> {
    Ok(NumberBatch { limit }.load(conn).await?)
}

/// `number_batch`'s statement, as a query diesel may cache: each connection prepares it once
/// (`sql_query` would have it parsed and planned again on every call, on every event's path).
///
/// Data-modifying CTEs run to completion whether read or not; the final SELECT sees the `users`
/// rows as they were before `switched`, hence the switch positions taken from the batch itself
/// where an author switched in it.
struct NumberBatch {
    limit: i64,
}

impl QueryId for NumberBatch {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for NumberBatch {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for NumberBatch {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH batch AS (
             SELECT id, row_number() OVER (ORDER BY id) AS n
               FROM (SELECT id FROM feed_events WHERE seq IS NULL ORDER BY id LIMIT ",
        );
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        out.push_sql(
            ") b),
         head AS (
             UPDATE feed_relay SET numbered_seq = numbered_seq + (SELECT count(*) FROM batch)
              WHERE id = 1
             RETURNING numbered_seq - (SELECT count(*) FROM batch) AS base),
         numbered AS (
             UPDATE feed_events e SET seq = head.base + batch.n
               FROM batch, head WHERE e.id = batch.id
             RETURNING e.seq, e.kind, e.author_id, e.follower_id, e.post_id, e.post_text,
                       coalesce(e.recorded_at, e.created_at) AS recorded_at),
         switched AS (
             UPDATE users u SET celebrity_seq = numbered.seq
               FROM numbered
              WHERE numbered.kind = 'celebrity' AND u.id = numbered.author_id
                AND u.celebrity_seq IS NULL
             RETURNING u.id),
         batch_switches AS (
             SELECT author_id, min(seq) AS seq FROM numbered
              WHERE kind = 'celebrity' GROUP BY author_id)
         SELECT n.seq, n.kind, n.author_id, n.follower_id, n.post_id, n.post_text,
                coalesce(u.celebrity_seq, s.seq) AS celebrity_seq,
                (extract(epoch FROM n.recorded_at) * 1000000)::bigint AS recorded_us
           FROM numbered n
           LEFT JOIN users u ON u.id = n.author_id
           LEFT JOIN batch_switches s ON s.author_id = n.author_id
          ORDER BY n.seq",
        );
        Ok(())
    }
}

/// Numbered events after `after`, in position order, with their authors' switch positions.
pub async fn numbered_after(
    conn: &mut AsyncPgConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<RelayedEvent>, StoreError> {
    Ok(diesel::sql_query(
        "SELECT e.seq, e.kind, e.author_id, e.follower_id, e.post_id, e.post_text,
                u.celebrity_seq,
                (extract(epoch FROM coalesce(e.recorded_at, e.created_at)) * 1000000)::bigint
                    AS recorded_us
           FROM feed_events e LEFT JOIN users u ON u.id = e.author_id
          WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
    )
    .bind::<BigInt, _>(after)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?)
}

/// Records that every event up to `seq` is published (confirmed by the broker).
pub async fn mark_published(conn: &mut AsyncPgConnection, seq: i64) -> Result<(), StoreError> {
    diesel::sql_query(
        "UPDATE feed_relay SET published_seq = greatest(published_seq, $1) WHERE id = 1",
    )
    .bind::<BigInt, _>(seq)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes up to `batch` published events older than `ttl`; returns how many.
pub async fn prune(
    conn: &mut AsyncPgConnection,
    ttl: Duration,
    batch: i64,
) -> Result<i64, StoreError> {
    let pruned: Position = diesel::sql_query(
        "WITH doomed AS (
             SELECT id, seq FROM feed_events
              WHERE seq <= (SELECT published_seq FROM feed_relay WHERE id = 1)
                AND created_at < now() - make_interval(secs => $1::bigint)
              ORDER BY seq LIMIT $2),
         gone AS (DELETE FROM feed_events e USING doomed WHERE e.id = doomed.id RETURNING e.seq),
         moved AS (
             UPDATE feed_relay SET pruned_seq = greatest(pruned_seq, (SELECT max(seq) FROM gone))
              WHERE id = 1 AND EXISTS (SELECT 1 FROM gone) RETURNING 1)
         SELECT (SELECT count(*) FROM gone) + 0 * (SELECT count(*) FROM moved) AS seq",
    )
    .bind::<BigInt, _>(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
    .bind::<BigInt, _>(batch)
    .get_result(conn)
    .await?;
    Ok(pruned.seq)
}

/// The relay's positions alone (no count of unnumbered rows): cheap enough for every resume.
pub(super) async fn relay_state_positions(
    conn: &mut AsyncPgConnection,
) -> Result<RelayState, StoreError> {
    Ok(diesel::sql_query(
        "SELECT numbered_seq, published_seq, pruned_seq, 0::bigint AS unnumbered
           FROM feed_relay WHERE id = 1",
    )
    .get_result(conn)
    .await?)
}
