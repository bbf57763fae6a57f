//! `/post/*`: writes by the author, reads by anyone, the feed, and, after each committed write,
//! the event handed to the `BrokerActor` for fan-out.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::auth::AuthenticatedUser;
use crate::http::error::ApiError;
use crate::http::validation;
use crate::http::AppState;
use crate::realtime::FeedEvent;
use crate::store;
use crate::store::models::Post;
use crate::store::posts::{self, Change};

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

/// Writes are refused up front while the broker is down: a post whose followers would never
/// hear of it is worse than a 503 the client can retry.
fn require_broker(state: &AppState) -> Result<(), ApiError> {
    if state.broker_health.is_up() {
        Ok(())
    } else {
        Err(ApiError::Unavailable(
            "the event broker is unavailable, retry later".into(),
        ))
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
    require_broker(&state)?;
    let post = {
        let mut conn = store::connection(&state.pool).await?;
        posts::create(&mut conn, me, &body.text).await?
    };
    state
        .fanout
        .announce(FeedEvent::PostCreated {
            post_id: post.id,
            post_text: post.text,
            author_user_id: me,
        })
        .await;
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
    require_broker(&state)?;
    let post = {
        let mut conn = store::connection(&state.pool).await?;
        refused(posts::update(&mut conn, body.id, me, &body.text).await?)?
    };
    state
        .fanout
        .announce(FeedEvent::PostUpdated {
            post_id: post.id,
            post_text: post.text,
            author_user_id: me,
        })
        .await;
    Ok(HttpResponse::Ok().finish())
}

pub async fn delete(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    require_broker(&state)?;
    {
        let mut conn = store::connection(&state.pool).await?;
        refused(posts::delete(&mut conn, *id, me).await?)?;
    }
    state
        .fanout
        .announce(FeedEvent::PostDeleted {
            post_id: *id,
            author_user_id: me,
        })
        .await;
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
    let feed = posts::feed(&mut conn, me, offset, limit).await?;
    Ok(HttpResponse::Ok().json(feed.into_iter().map(PostView::from).collect::<Vec<_>>()))
}
