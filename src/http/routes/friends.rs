//! `/friend/set/{user_id}` and `/friend/delete/{user_id}`: directed follow edges, idempotent.
//! Each change is committed with its feed log event (and the follow that brings an author to
//! `realtime.celebrity_followers` with the author's switch to celebrity); the relay carries what
//! nodes must know to the follower's live sessions, in order with the posts.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::http::auth::AuthenticatedUser;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::{self, friends, users};

pub async fn set(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    friend: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let friend = *friend;
    if friend == me {
        return Err(ApiError::BadRequest("you cannot follow yourself".into()));
    }
    let mut conn = store::connection(&state.pool).await?;
    if !users::exists_by_id(&mut conn, friend).await? {
        return Err(ApiError::NotFound("user not found".into()));
    }
    // `NoSuchUser` (404) if the user was deleted between the check and the insert.
    let threshold = state.realtime.celebrity_followers;
    if friends::follow(&mut conn, me, friend, threshold)
        .await?
        .is_some()
    {
        state.relay.nudge();
    }
    Ok(HttpResponse::Ok().finish())
}

pub async fn delete(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    friend: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = store::connection(&state.pool).await?;
    if friends::unfollow(&mut conn, me, *friend).await?.is_some() {
        state.relay.nudge();
    }
    Ok(HttpResponse::Ok().finish())
}
