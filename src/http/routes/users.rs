//! `/user/register`, `/login`, `/user/get/{id}`, `/user/search`.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::token;
use crate::http::error::ApiError;
use crate::http::validation::{self, BIOGRAPHY_MAX_CHARS, CITY_MAX_CHARS, NAME_MAX_CHARS};
use crate::http::AppState;
use crate::store::models::{NewUser, User};
use crate::store::{self, tokens, users};

/// Most users one search returns.
const SEARCH_LIMIT: i64 = 1_000;

/// A user as the API shows it (never the password hash).
#[derive(Serialize)]
pub struct UserView {
    id: Uuid,
    first_name: String,
    second_name: String,
    birthdate: NaiveDate,
    biography: String,
    city: String,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        UserView {
            id: user.id,
            first_name: user.first_name,
            second_name: user.second_name,
            birthdate: user.birthdate,
            biography: user.biography,
            city: user.city,
        }
    }
}

#[derive(Deserialize)]
pub struct RegisterRequest {
    first_name: String,
    second_name: String,
    birthdate: String,
    #[serde(default)]
    biography: String,
    city: String,
    password: String,
}

pub async fn register(
    state: web::Data<AppState>,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let first_name = validation::required_text("first_name", &body.first_name, NAME_MAX_CHARS)?;
    let second_name = validation::required_text("second_name", &body.second_name, NAME_MAX_CHARS)?;
    let birthdate = validation::birthdate(&body.birthdate)?;
    let biography = validation::optional_text("biography", &body.biography, BIOGRAPHY_MAX_CHARS)?;
    let city = validation::required_text("city", &body.city, CITY_MAX_CHARS)?;
    validation::password(&body.password)?;

    let password_hash = state.hasher.hash(body.password.clone()).await?;
    let id = Uuid::new_v4();
    let mut conn = store::connection(&state.pool).await?;
    users::insert(
        &mut conn,
        &NewUser {
            id,
            first_name,
            second_name,
            birthdate,
            biography,
            city,
            password_hash: &password_hash,
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "user_id": id })))
}

#[derive(Deserialize)]
pub struct LoginRequest {
    id: Uuid,
    password: String,
}

/// Failed attempts (a wrong password, or an id that is no user's) count against the user id
/// and the client's address; past either limit the answer is 429 before any hashing. (An
/// attempt refused with 503 or lost to a database error counts too: it was a guess either way.)
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { id, password } = body.into_inner();
    let address = req.peer_addr().map(|a| a.ip());
    let throttle = &state.login_throttle;
    // Counted as a failure from here on, unless the password turns out right.
    throttle
        .begin(id, address)
        .map_err(|wait| ApiError::TooManyRequests(whole_seconds(wait)))?;
    let stored = {
        let mut conn = store::connection(&state.pool).await?;
        users::password_hash(&mut conn, id).await?
    };
    let Some(stored) = stored else {
        throttle.unknown_user(id);
        return Err(ApiError::NotFound("user not found".into()));
    };
    if !state.hasher.verify(password, stored).await? {
        return Err(ApiError::BadRequest("wrong password".into()));
    }
    throttle.succeeded(id, address);
    let token = token::generate();
    let expires_at = i64::try_from(state.auth.token_ttl_secs)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|ttl| Utc::now().checked_add_signed(ttl))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let mut conn = store::connection(&state.pool).await?;
    tokens::insert(&mut conn, &token::digest(&token), id, expires_at).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "token": token })))
}

pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = store::connection(&state.pool).await?;
    let user = users::find(&mut conn, *id)
        .await?
        .ok_or_else(|| ApiError::NotFound("user not found".into()))?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    first_name: String,
    last_name: String,
}

pub async fn search(
    state: web::Data<AppState>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let first_name = validation::required_text("first_name", &query.first_name, NAME_MAX_CHARS)?;
    let last_name = validation::required_text("last_name", &query.last_name, NAME_MAX_CHARS)?;
    let mut conn = store::connection(&state.pool).await?;
    let found = users::search(&mut conn, first_name, last_name, SEARCH_LIMIT).await?;
    Ok(HttpResponse::Ok().json(found.into_iter().map(UserView::from).collect::<Vec<_>>()))
}

/// A wait as `Retry-After` gives it: whole seconds, rounded up, at least one.
fn whole_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}
