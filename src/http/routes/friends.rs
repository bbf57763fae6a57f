//! `/friend/set/{user_id}` and `/friend/delete/{user_id}`: directed follow edges, idempotent.
//! Each change is committed with its feed log event (and the follow that brings an author to
//! `realtime.celebrity_followers` with the author's switch to celebrity); the relay carries what
//! nodes must know to the follower's live sessions, in order with the posts.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::http::auth::AuthenticatedUser;
use crate::http::error::ApiError;
use crate::http::idempotency::{self, IdempotencyKey};
use crate::http::AppState;
use crate::store::idempotency::Write;
use crate::store::{friends, users};

pub async fn set(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    key: IdempotencyKey,
    friend: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let friend = *friend;
    if friend == me {
        return Err(ApiError::BadRequest("you cannot follow yourself".into()));
    }
    let threshold = state.realtime.celebrity_followers;
    let request = format!("PUT /friend/set/{friend}");
    let write: Write = Box::new(move |conn| {
        Box::pin(async move {
            if !users::exists_by_id(conn, friend).await? {
                return Ok(idempotency::refusal(404, "user not found"));
            }
            // `NoSuchUser` (404) if the user was deleted between the check and the insert.
            friends::follow(conn, me, friend, threshold).await?;
            Ok(idempotency::success(String::new()))
        })
    });
    idempotency::write_once(&state, me, &key, &request, write).await
}

pub async fn delete(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    key: IdempotencyKey,
    friend: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let friend = *friend;
    let request = format!("PUT /friend/delete/{friend}");
    let write: Write = Box::new(move |conn| {
        Box::pin(async move {
            friends::unfollow(conn, me, friend).await?;
            Ok(idempotency::success(String::new()))
        })
    });
    idempotency::write_once(&state, me, &key, &request, write).await
}
