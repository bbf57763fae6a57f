//! Authentication: the `AuthenticatedUser` extractor for `Authorization: Bearer <token>`, and
//! the token lookup the WebSocket route shares (it also accepts `?token=`).

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
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

/// Resolves a token to its user; 401 for anything but a live token.
pub async fn authenticate(pool: &DbPool, token: &str) -> Result<Uuid, ApiError> {
    // Tokens herald issues are 64 hex digits; anything else cannot match, so skip the query.
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::Unauthorized);
    }
    let mut conn = store::connection(pool).await?;
    tokens::user_for(&mut conn, &token::digest(token))
        .await?
        .ok_or(ApiError::Unauthorized)
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
