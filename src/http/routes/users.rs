//! `/user/register`, `/login`, `/user/get/{id}`, `/user/search`.

use std::net::IpAddr;

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::token;
use crate::http::client_address::ClientAddress;
use crate::http::error::ApiError;
use crate::http::validation::{self, BIOGRAPHY_MAX_CHARS, CITY_MAX_CHARS, NAME_MAX_CHARS};
use crate::http::AppState;
use crate::limits;
use crate::store::models::{NewUser, User};
use crate::store::{self, tokens, users};

/// Most users one search returns (the spec keeps search open to anyone: it is bounded in rows
/// and in bytes, and limited per address, so the directory cannot be pulled out in bulk).
const SEARCH_MAX_ROWS: i64 = 100;
/// Most bytes of JSON one search answers with; rows past it are left out (at least one row is
/// always sent: one user's largest record is ~20 KiB).
const SEARCH_MAX_BYTES: usize = 128 * 1024;

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

/// Limited per client address (`auth.registrations_per_address`: 429), and hashed behind every
/// waiting login's check, so a registration flood neither fills the table nor starves logins.
pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    state
        .registration_limit
        .admit(client_ip(&req, &state))
        .map_err(|wait| too_many(wait, "too many registrations from this address"))?;
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

/// Failed attempts (a wrong password, or an id that is no user's) are counted by the
/// `LoginThrottle` (see `auth::throttle`), which answers 429 before any hashing when the
/// attempt must wait. An attempt that ends in 503 (no database, no free hasher) is no failure.
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { id, password } = body.into_inner();
    // Counted as a failure from here on, unless it turns out otherwise.
    let attempt = state
        .login_throttle
        .begin(id, client_ip(&req, &state))
        .map_err(|wait| too_many(wait, "too many failed logins"))?;
    let stored = async {
        let mut conn = store::connection(&state.pool).await?;
        users::password_hash(&mut conn, id).await
    }
    .await;
    let stored = match stored {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            attempt.unknown_user();
            return Err(ApiError::NotFound("user not found".into()));
        }
        Err(error) => {
            attempt.void();
            return Err(error.into());
        }
    };
    match state.hasher.verify(password, stored).await {
        Ok(true) => attempt.succeeded(),
        Ok(false) => {
            attempt.failed();
            return Err(ApiError::BadRequest("wrong password".into()));
        }
        Err(error) => {
            attempt.void();
            return Err(error.into());
        }
    }
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

/// Open to anyone, as the spec has it, but limited per client address
/// (`http.searches_per_address`: 429) and bounded: at most [`SEARCH_MAX_ROWS`] users and
/// [`SEARCH_MAX_BYTES`] of JSON.
pub async fn search(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let first_name = validation::required_text("first_name", &query.first_name, NAME_MAX_CHARS)?;
    let last_name = validation::required_text("last_name", &query.last_name, NAME_MAX_CHARS)?;
    state
        .search_limit
        .admit(client_ip(&req, &state))
        .map_err(|wait| too_many(wait, "too many searches from this address"))?;
    let mut conn = store::connection(&state.pool).await?;
    let found = users::search(&mut conn, first_name, last_name, SEARCH_MAX_ROWS).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(bounded_json_array(found.into_iter().map(UserView::from))))
}

/// A JSON array of `items`, ending before the one that would take it past
/// [`SEARCH_MAX_BYTES`] (the first is always in).
fn bounded_json_array(items: impl Iterator<Item = UserView>) -> String {
    let mut body = String::from("[");
    for item in items {
        // A struct of strings, a date and a UUID always serializes.
        let Ok(json) = serde_json::to_string(&item) else {
            continue;
        };
        if body.len() > 1 && body.len() + json.len() + 2 > SEARCH_MAX_BYTES {
            break;
        }
        if body.len() > 1 {
            body.push(',');
        }
        body.push_str(&json);
    }
    body.push(']');
    body
}

/// The address this request is charged to, as `http.trusted_proxies` says.
pub(crate) fn client_ip(req: &HttpRequest, state: &AppState) -> Option<IpAddr> {
    ClientAddress::of_request(req, &state.trusted_proxies).map(|a| a.client)
}

fn too_many(wait: std::time::Duration, why: &'static str) -> ApiError {
    ApiError::TooManyRequests(limits::whole_seconds(wait), why)
}
