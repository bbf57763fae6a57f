//! `/friend/set/{user_id}` and `/friend/delete/{user_id}`: directed follow edges, idempotent.

use actix_web::{web, HttpResponse};
use uuid::Uuid;

use crate::http::auth::AuthenticatedUser;
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::{self, friends, users, StoreError};

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
    match friends::follow(&mut conn, me, friend).await {
        // The user was deleted between the check and the insert.
        Err(StoreError::Query(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ForeignKeyViolation,
            _,
        ))) => Err(ApiError::NotFound("user not found".into())),
        other => other.map_err(ApiError::from),
    }?;
    Ok(HttpResponse::Ok().finish())
}

pub async fn delete(
    state: web::Data<AppState>,
    AuthenticatedUser(me): AuthenticatedUser,
    friend: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = store::connection(&state.pool).await?;
    friends::unfollow(&mut conn, me, *friend).await?;
    Ok(HttpResponse::Ok().finish())
}
