//! `/post/*`: writes by the author (each committed with its feed log event, then the relay
//! woken), reads by anyone, and the feed with the position it reflects (`X-Feed-Seq`).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::auth::AuthenticatedUser;
use crate::http::error::ApiError;
use crate::http::validation;
use crate::http::AppState;
use crate::store;
use crate::store::events;
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

fn refused<T>(change: Change<T>) -> Result<T, ApiError> {
    match change {
        Change::Done(value) => Ok(value),
        Change::NotFound => Err(ApiError::NotFound("post not found".into())),
        Change::NotAuthor => Err(ApiError::Forbidden(
            "only the author may change a post".into(),
        )),
    }
}

#[derive(Deserialize)]
pub struct CreateRequest {
    text: String,
}

pub async fn create(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    body: web::Json<CreateRequest>,
) -> Result<HttpResponse, ApiError> {
    validation::post_text(&body.text)?;
    let post = {
        let mut conn = store::connection(&state.pool).await?;
        posts::create(&mut conn, me, &body.text).await?
    };
    state.relay.nudge();
    Ok(HttpResponse::Ok().json(post.id))
}

#[derive(Deserialize)]
pub struct UpdateRequest {
    id: Uuid,
    text: String,
}

pub async fn update(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    body: web::Json<UpdateRequest>,
) -> Result<HttpResponse, ApiError> {
    validation::post_text(&body.text)?;
    {
        let mut conn = store::connection(&state.pool).await?;
        refused(posts::update(&mut conn, body.id, me, &body.text).await?)?;
    }
    state.relay.nudge();
    Ok(HttpResponse::Ok().finish())
}

pub async fn delete(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    {
        let mut conn = store::connection(&state.pool).await?;
        refused(posts::delete(&mut conn, *id, me).await?)?;
    }
    state.relay.nudge();
    Ok(HttpResponse::Ok().finish())
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
