//! `/post/*`: writes by the author (each committed with its feed log event, then the relay
//! woken), reads by anyone, and the feed with the position it reflects (`X-Feed-Seq`).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::auth::{self, AuthenticatedUser, BearerHash};
use crate::http::error::ApiError;
use crate::http::idempotency::{self, IdempotencyKey};
use crate::http::validation;
use crate::http::AppState;
use crate::store;
use crate::store::events;
use crate::store::idempotency::{Outcome, Write};
use crate::store::models::Post;
use crate::store::posts::{self, Change};

/// The response header of `GET /post/feed` that gives the feed position its page reflects.
pub const FEED_SEQ_HEADER: &str = "X-Feed-Seq";

/// A post as the API shows it.
#[derive(Serialize)]
pub struct PostView {
    id: Uuid,
    text: String,
    author_user_id: Uuid,
}

impl From<Post> for PostView {
    fn from(post: Post) -> Self {
        PostView {
            id: post.id,
            text: post.text,
            author_user_id: post.author_id,
        }
    }
}

/// A write to someone's post as the answer it gets (kept for repeats of its
/// `Idempotency-Key`).
fn outcome_of<T>(change: Change<T>) -> Outcome {
    match change {
        Change::Done(_) => idempotency::success(String::new()),
        Change::NotFound => idempotency::refusal(404, "post not found"),
        Change::NotAuthor => idempotency::refusal(403, "only the author may change a post"),
    }
}

#[derive(Deserialize)]
pub struct CreateRequest {
    text: String,
}

/// `POST /post/create`. Without an `Idempotency-Key` the token is checked by the write itself,
/// one statement (see `posts::create_as_bearer`); with one, the key's user must be known first.
pub async fn create(
    state: web::Data<AppState>,
    BearerHash(token_hash): BearerHash,
    key: IdempotencyKey,
    body: web::Json<CreateRequest>,
) -> Result<HttpResponse, ApiError> {
    if key.0.is_none() {
        validation::post_text(&body.text)?;
        let mut conn = store::connection(&state.pool).await?;
        let id = posts::create_as_bearer(&mut conn, &token_hash, &body.text)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        drop(conn);
        state.relay.nudge();
        return Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(serde_json::to_string(&id).unwrap_or_default()));
    }
    let me = auth::authenticate_hash(&state.pool, &token_hash).await?;
    validation::post_text(&body.text)?;
    let text = body.into_inner().text;
    let request = format!("POST /post/create\n{text}");
    let write: Write = Box::new(move |conn| {
        Box::pin(async move {
            let post = posts::create(conn, me, &text).await?;
            Ok(idempotency::success(
                serde_json::to_string(&post.id).unwrap_or_default(),
            ))
        })
    });
    idempotency::write_once(&state, me, &key, &request, write).await
}

#[derive(Deserialize)]
pub struct UpdateRequest {
    id: Uuid,
    text: String,
}

pub async fn update(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    key: IdempotencyKey,
    body: web::Json<UpdateRequest>,
) -> Result<HttpResponse, ApiError> {
    validation::post_text(&body.text)?;
    let UpdateRequest { id, text } = body.into_inner();
    let request = format!("PUT /post/update\n{id}\n{text}");
    let write: Write = Box::new(move |conn| {
        Box::pin(async move { Ok(outcome_of(posts::update(conn, id, me, &text).await?)) })
    });
    idempotency::write_once(&state, me, &key, &request, write).await
}

pub async fn delete(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    key: IdempotencyKey,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let request = format!("PUT /post/delete/{id}");
    let write: Write = Box::new(move |conn| {
        Box::pin(async move { Ok(outcome_of(posts::delete(conn, id, me).await?)) })
    });
    idempotency::write_once(&state, me, &key, &request, write).await
}

pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = store::connection(&state.pool).await?;
    let post = posts::find(&mut conn, *id)
        .await?
        .ok_or_else(|| ApiError::NotFound("post not found".into()))?;
    Ok(HttpResponse::Ok().json(PostView::from(post)))
}

#[derive(Deserialize)]
pub struct FeedQuery {
    offset: Option<i64>,
    limit: Option<i64>,
}

pub async fn feed(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    query: web::Query<FeedQuery>,
) -> Result<HttpResponse, ApiError> {
    let (offset, limit) = validation::page(query.offset, query.limit)?;
    let mut conn = store::connection(&state.pool).await?;
    // Read before the page: every event at or below this position was committed before the
    // page was read, so a client that subscribes with `since` set to it misses nothing.
    let position = events::head(&mut conn).await?;
    let feed = posts::feed(&mut conn, me, offset, limit).await?;
    Ok(HttpResponse::Ok()
        .insert_header((FEED_SEQ_HEADER, position.to_string()))
        .json(feed.into_iter().map(PostView::from).collect::<Vec<_>>()))
}
