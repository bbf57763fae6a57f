//! Authentication: the `AuthenticatedUser` extractor for `Authorization: Bearer <token>`, the
//! token lookup the feed routes share (they also accept `?token=`), and `POST /logout`.

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::error::ApiError;
use super::AppState;
use crate::auth::token;
use crate::store::{self, tokens, DbPool};

/// The user a valid token belongs to.
#[derive(Debug, Clone, Copy)]
pub struct AuthenticatedUser(pub Uuid);

/// The token from `Authorization: Bearer <token>`, if any.
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// The stored form of the request's bearer token, without asking the database: 401 when there
/// is none, or it cannot be one herald issued. (For a write that checks the token itself.)
pub fn bearer_hash(req: &HttpRequest) -> Result<Vec<u8>, ApiError> {
    well_formed(&bearer_token(req).ok_or(ApiError::Unauthorized)?)
}

/// The request's bearer token in its stored form, as an extractor: put it first among a
/// handler's arguments, so a request without a token is a 401 before its other parts (a key
/// header, the body) are judged.
pub struct BearerHash(pub Vec<u8>);

impl FromRequest for BearerHash {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(bearer_hash(req).map(BearerHash))
    }
}

/// Resolves a token to its user; 401 for anything but a live token.
pub async fn authenticate(pool: &DbPool, token: &str) -> Result<Uuid, ApiError> {
    authenticate_hash(pool, &well_formed(token)?).await
}

/// [`authenticate`] for a token already in its stored form.
pub async fn authenticate_hash(pool: &DbPool, hash: &[u8]) -> Result<Uuid, ApiError> {
    let mut conn = store::connection(pool).await?;
    tokens::user_for(&mut conn, hash)
        .await?
        .ok_or(ApiError::Unauthorized)
}

/// What a feed session needs of its token: whose it is, and what to watch (see
/// `realtime::session::token_watch`) so that the session ends when the token does.
pub struct Grant {
    pub user_id: Uuid,
    pub token_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    /// The feed log's head when the token was checked: where a new session's feed may start
    /// (`admission::admit_from`).
    pub head: Option<i64>,
}

/// [`authenticate`] for a feed session: the user, with the token's hash and expiry.
pub async fn grant(pool: &DbPool, token: &str) -> Result<Grant, ApiError> {
    let token_hash = well_formed(token)?;
    let mut conn = store::connection(pool).await?;
    let (user_id, expires_at, head) = tokens::grant_for(&mut conn, &token_hash)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok(Grant {
        user_id,
        token_hash,
        expires_at,
        head,
    })
}

/// The stored form of a token, if it has the form herald issues (64 hex digits): anything
/// else cannot match, so no query is made for it.
fn well_formed(token: &str) -> Result<Vec<u8>, ApiError> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::Unauthorized);
    }
    Ok(token::digest(token))
}

/// `POST /logout`: the caller's token stops working at once, on every instance (each request
/// looks its token up in the shared database), and its open feed sessions are closed with
/// 4001 within a watchdog period.
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let token = bearer_token(&req).ok_or(ApiError::Unauthorized)?;
    let hash = well_formed(&token)?;
    let mut conn = store::connection(&state.pool).await?;
    if tokens::user_for(&mut conn, &hash).await?.is_none() {
        return Err(ApiError::Unauthorized);
    }
    tokens::revoke(&mut conn, &hash).await?;
    Ok(HttpResponse::Ok().finish())
}

impl FromRequest for AuthenticatedUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token.ok_or(ApiError::Unauthorized)?;
            let state = state.ok_or(ApiError::Internal)?;
            authenticate(&state.pool, &token)
                .await
                .map(AuthenticatedUser)
        })
    }
}
