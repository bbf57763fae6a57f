//! Queries on `posts`: writes restricted to the author (each with its feed event, in one
//! transaction), lookups, and the feed.

use chrono::{DateTime, Utc};
use diesel::dsl::{self, exists};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Bytea, Text, Timestamptz, Untyped, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::events::{self, Kind, NewEvent};
use super::models::Post;
use super::schema::{friendships, posts};
use super::StoreError;

/// What a write by `author_id` to someone's post came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Change<T> {
    Done(T),
    NotFound,
    NotAuthor,
}

pub async fn create(
    conn: &mut AsyncPgConnection,
    author_id: Uuid,
    text: &str,
) -> Result<Post, StoreError> {
    let now = Utc::now();
    conn.transaction::<_, StoreError, _>(async move |conn| {
        let post = diesel::insert_into(posts::table)
            .values((
                posts::id.eq(Uuid::now_v7()),
                posts::author_id.eq(author_id),
                posts::text.eq(text),
                posts::created_at.eq(now),
                posts::updated_at.eq(now),
            ))
            .returning(Post::as_returning())
            .get_result(conn)
            .await?;
        let event = NewEvent::post(Kind::PostCreated, author_id, post.id, Some(text));
        events::record(conn, event).await?;
        Ok(post)
    })
    .await
}

/// [`create`] for the bearer of a token, in one autocommit statement (one round trip, where
/// looking the token up and then writing in a transaction takes five): the token is checked in
/// the statement's own snapshot, so a token revoked (`POST /logout`) or expired before it ran
/// writes nothing, on every instance alike. The author's row is locked (`FOR SHARE`) before
/// either insert and held until the statement commits, as [`events::record`] does for a post.
/// `None`: the token is not live (or does not exist).
pub async fn create_as_bearer(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    text: &str,
) -> Result<Option<Uuid>, StoreError> {
    let created: Option<Created> = CreateAsBearer {
        token_hash,
        id: Uuid::now_v7(),
        text,
        now: Utc::now(),
    }
    .get_result(conn)
    .await
    .optional()?;
    Ok(created.map(|c| c.id))
}

#[derive(QueryableByName)]
struct Created {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// `create_as_bearer`'s statement, prepared once per connection (a static query id).
struct CreateAsBearer<'a> {
    token_hash: &'a [u8],
    id: Uuid,
    text: &'a str,
    now: DateTime<Utc>,
}

impl QueryId for CreateAsBearer<'_> {
    type QueryId = CreateAsBearer<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for CreateAsBearer<'_> {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for CreateAsBearer<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH author AS (
                 SELECT users.id FROM login_tokens JOIN users ON users.id = login_tokens.user_id
                  WHERE login_tokens.token_hash = ",
        );
        out.push_bind_param::<Bytea, _>(&self.token_hash)?;
        out.push_sql(" AND login_tokens.expires_at > ");
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(
            " FOR SHARE OF users),
             post AS (
                 INSERT INTO posts (id, author_id, text, created_at, updated_at)
                 SELECT ",
        );
        out.push_bind_param::<SqlUuid, _>(&self.id)?;
        out.push_sql(", author.id, ");
        out.push_bind_param::<Text, _>(&self.text)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.now)?;
        out.push_sql(
            " FROM author
                 RETURNING id, author_id, text),
             written AS (
                 INSERT INTO feed_events (author_id, kind, follower_id, post_id, post_text)
                 SELECT author_id, ",
        );
        out.push_sql("'post.created'"); // Kind::PostCreated.as_str()
        out.push_sql(
            ", NULL, id, text FROM post
                 RETURNING post_id)
             SELECT written.post_id AS id FROM written",
        );
        Ok(())
    }
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Option<Post>, StoreError> {
    Ok(posts::table
        .find(id)
        .select(Post::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Tells a missing post from someone else's, after a write matched no row of the author's.
async fn refusal<T>(conn: &mut AsyncPgConnection, id: Uuid) -> Result<Change<T>, StoreError> {
    let found: bool = diesel::select(exists(posts::table.find(id)))
        .get_result(conn)
        .await?;
    Ok(if found {
        Change::NotAuthor
    } else {
        Change::NotFound
    })
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    author_id: Uuid,
    text: &str,
) -> Result<Change<Post>, StoreError> {
    conn.transaction::<_, StoreError, _>(async move |conn| {
        let updated = diesel::update(posts::table.find(id).filter(posts::author_id.eq(author_id)))
            .set((posts::text.eq(text), posts::updated_at.eq(Utc::now())))
            .returning(Post::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        let Some(post) = updated else {
            return refusal(conn, id).await;
        };
        erase_earlier_text(conn, id, Some(text)).await?;
        let event = NewEvent::post(Kind::PostUpdated, author_id, id, Some(text));
        events::record(conn, event).await?;
        Ok(Change::Done(post))
    })
    .await
}

pub async fn delete(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    author_id: Uuid,
) -> Result<Change<()>, StoreError> {
    conn.transaction::<_, StoreError, _>(async move |conn| {
        let deleted = diesel::delete(posts::table.find(id).filter(posts::author_id.eq(author_id)))
            .execute(conn)
            .await?;
        if deleted == 0 {
            return refusal(conn, id).await;
        }
        erase_earlier_text(conn, id, None).await?;
        events::record(conn, NewEvent::post(Kind::PostDeleted, author_id, id, None)).await?;
        Ok(Change::Done(()))
    })
    .await
}

/// Rewrites the post's earlier events in the feed log so that no replay (resume, gap fill)
/// carries text its author has since taken back: after an edit they carry the new text; after
/// a deletion they become deletions themselves (a client replaying them drops the post, then
/// meets the real deletion at its own position and drops it again, harmlessly). Their
/// positions stay: a position never changes its event's post, only what it says of it.
async fn erase_earlier_text(
    conn: &mut AsyncPgConnection,
    post_id: Uuid,
    now: Option<&str>,
) -> Result<(), StoreError> {
    use diesel::sql_types::Nullable;
    // The post's events other than its deletion; `post_id` is indexed (feed_events_post_idx).
    diesel::sql_query(
        "UPDATE feed_events
            SET kind = CASE WHEN $2 IS NULL THEN 'post.deleted' ELSE kind END,
                post_text = $2
          WHERE post_id = $1 AND kind <> 'post.deleted'",
    )
    .bind::<SqlUuid, _>(post_id)
    .bind::<Nullable<Text>, _>(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Posts of everyone `user_id` follows, newest first.
///
/// A nested loop over the user's follow edges (primary key) into `posts_author_feed_idx`,
/// then a top-N sort. On 100,000 users, 500,000 edges and 500,000 posts:
///
/// ```text
/// Limit
///   ->  Sort  (Sort Key: p.id DESC)
///         ->  Nested Loop
///               ->  Bitmap Heap Scan on friendships f
///                     ->  Bitmap Index Scan on friendships_pkey  (Index Cond: user_id = '…')
///               ->  Index Scan using posts_author_feed_idx on posts p
///                     Index Cond: (author_id = f.friend_id)
/// ```
pub async fn feed(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    offset: i64,
    limit: i64,
) -> Result<Vec<Post>, StoreError> {
    Ok(feed_query(user_id, offset, limit).load(conn).await?)
}

/// The feed's query, separate so its plan can be checked as diesel really writes it.
#[dsl::auto_type(no_type_alias)]
pub fn feed_query(user_id: Uuid, offset: i64, limit: i64) -> _ {
    let columns: dsl::AsSelect<Post, Pg> = Post::as_select();
    posts::table
        .inner_join(friendships::table.on(friendships::friend_id.eq(posts::author_id)))
        .filter(friendships::user_id.eq(user_id))
        .order(posts::id.desc())
        .offset(offset)
        .limit(limit)
        .select(columns)
}
