//! The `Idempotency-Key` header of authenticated writes: a write sent with one runs at most once
//! per user and key within `http.idempotency_ttl_secs` (see `store::idempotency`); a repeat gets
//! the first answer, marked `Idempotent-Replayed: true`, so a client may retry after a 503, a
//! 500 or a lost connection without posting twice. A key reused for a different request is
//! refused (422), as the IETF draft on this header does.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ApiError;
use super::AppState;
use crate::store::idempotency::{self, KeyUse, Once, Outcome, Write};
use crate::store::{self, DbPool};

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The response header on an answer repeated from the first request with the key.
pub const REPLAYED: &str = "Idempotent-Replayed";

/// Longest key accepted.
pub const MAX_KEY_CHARS: usize = 128;

/// The request's `Idempotency-Key`, if it sent one: 1 to 128 visible ASCII characters, else 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub Option<String>);

impl IdempotencyKey {
    fn read(req: &HttpRequest) -> Result<Self, ApiError> {
        let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
        let Some(value) = values.next() else {
            return Ok(IdempotencyKey(None));
        };
        if values.next().is_some() {
            return Err(bad_key("send one Idempotency-Key header, not several"));
        }
        let text = value
            .to_str()
            .map_err(|_| bad_key("Idempotency-Key must be visible ASCII"))?
            .trim();
        if text.is_empty() || text.len() > MAX_KEY_CHARS {
            return Err(bad_key("Idempotency-Key must be 1 to 128 characters"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(bad_key("Idempotency-Key must be visible ASCII"));
        }
        Ok(IdempotencyKey(Some(text.to_owned())))
    }
}

fn bad_key(why: &str) -> ApiError {
    ApiError::BadRequest(why.into())
}

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Self::read(req))
    }
}

/// A write's outcome that may be kept: a success with `body` (JSON, or empty).
pub fn success(body: String) -> Outcome {
    Outcome { status: 200, body }
}

/// A write's refusal that may be kept (404 or 403), with its message.
pub fn refusal(status: u16, message: &str) -> Outcome {
    Outcome {
        status: i16::try_from(status).unwrap_or(400),
        body: message.to_owned(),
    }
}

/// Runs `write` as the request's key says: at once without a key; once per key with one.
/// `request` describes the request (method, path, the body's fields) for the key's fingerprint.
/// After a write that ran and succeeded, the relay is woken.
pub async fn write_once(
    state: &AppState,
    user_id: Uuid,
    key: &IdempotencyKey,
    request: &str,
    write: Write,
) -> Result<HttpResponse, ApiError> {
    let mut conn = store::connection(&state.pool).await?;
    let (outcome, replayed) = match &key.0 {
        None => (write(&mut conn).await?, false),
        Some(key) => {
            let fingerprint = hex::encode(Sha256::digest(request.as_bytes()));
            let key_use = KeyUse {
                user_id,
                key,
                fingerprint: &fingerprint,
                ttl: state.idempotency_ttl,
            };
            match idempotency::run_once(&mut conn, key_use, write).await? {
                Once::Ran(outcome) => (outcome, false),
                Once::Repeated(outcome) => (outcome, true),
                Once::KeyReused => {
                    return Err(ApiError::Unprocessable(
                        "this Idempotency-Key was used for a different request".into(),
                    ))
                }
            }
        }
    };
    drop(conn);
    if outcome.status == 200 && !replayed {
        state.relay.nudge();
    }
    answer(outcome, replayed)
}

/// The HTTP answer of a kept outcome.
fn answer(outcome: Outcome, replayed: bool) -> Result<HttpResponse, ApiError> {
    let error = match outcome.status {
        200 => {
            let mut response = HttpResponse::Ok();
            if replayed {
                response.insert_header((REPLAYED, HeaderValue::from_static("true")));
            }
            if outcome.body.is_empty() {
                return Ok(response.finish());
            }
            return Ok(response
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .body(outcome.body));
        }
        403 => ApiError::Forbidden(outcome.body),
        404 => ApiError::NotFound(outcome.body),
        _ => ApiError::BadRequest(outcome.body),
    };
    Err(error)
}

/// How often each instance deletes outcomes older than `http.idempotency_ttl_secs`, and how
/// many per statement.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const PRUNE_BATCH: i64 = 10_000;

/// Prunes expired outcomes on a schedule, for as long as the runtime runs. (Expired ones are
/// ignored anyway: this only keeps the table small.) A failure waits for the next round.
pub fn spawn_pruner(pool: DbPool, ttl: Duration) {
    actix_rt::spawn(async move {
        loop {
            tokio::time::sleep(PRUNE_EVERY).await;
            let Ok(mut conn) = store::connection(&pool).await else {
                continue;
            };
            loop {
                match idempotency::prune(&mut conn, ttl, PRUNE_BATCH).await {
                    Ok(pruned) if pruned == PRUNE_BATCH => {}
                    Ok(_) => break,
                    Err(error) => {
                        log::debug!("pruning idempotency keys: {error}");
                        break;
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::IdempotencyKey;

    #[test]
    fn keys_are_one_to_128_visible_characters() {
        let read = |value: &str| {
            IdempotencyKey::read(
                &TestRequest::default()
                    .insert_header(("Idempotency-Key", value))
                    .to_http_request(),
            )
        };
        assert_eq!(
            read("a1b2-c3").expect("fine"),
            IdempotencyKey(Some("a1b2-c3".into()))
        );
        assert!(read(&"k".repeat(128)).is_ok());
        assert!(read(&"k".repeat(129)).is_err());
        assert!(read("   ").is_err());
        assert_eq!(
            IdempotencyKey::read(&TestRequest::default().to_http_request()).expect("none"),
            IdempotencyKey(None)
        );
    }
}
