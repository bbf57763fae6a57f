//! `ApiError`: every way a request can fail, with its status. The JSON body
//! `{"message", "request_id", "code"}` is written by the request-id middleware, which is the
//! one place that knows the request id; errors from actix's own extractors are mapped here too.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use super::body_deadline::BodyTimedOut;
use crate::auth::password::PasswordError;
use crate::realtime::session::admission::AdmissionError;
use crate::realtime::BrokerError;
use crate::store::StoreError;

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing, unknown or expired token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0} is not allowed here; allowed: {1}")]
    MethodNotAllowed(String, &'static str),
    #[error(transparent)]
    BodyTimeout(BodyTimedOut),
    #[error("request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// A well-formed request that cannot be served as sent (an `Idempotency-Key` reused for a
    /// different request).
    #[error("{0}")]
    Unprocessable(String),
    /// 429: wait this many seconds, for this reason.
    #[error("{1}; retry in {0} seconds")]
    TooManyRequests(u64, &'static str),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
            }
            ApiError::TooManyRequests(secs, _) => {
                response.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            ApiError::MethodNotAllowed(_, allowed) => {
                response.insert_header((header::ALLOW, *allowed));
            }
            // The rest of the body may still be on its way: the connection cannot be reused.
            ApiError::BodyTimeout(_) => {
                response.force_close();
            }
            _ => {}
        }
        // The body is filled in by `request_id::stamp`, which knows the request id.
        response.finish()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        if let StoreError::NoSuchUser = error {
            return ApiError::NotFound("user not found".into());
        }
        if error.is_unavailable() {
            log::warn!("{error}");
            ApiError::Unavailable("the database is unavailable, retry later".into())
        } else {
            log::error!("{error}");
            ApiError::Internal
        }
    }
}

impl From<BrokerError> for ApiError {
    fn from(error: BrokerError) -> Self {
        log::warn!("{error}");
        ApiError::Unavailable("the event broker is unavailable, retry later".into())
    }
}

impl From<AdmissionError> for ApiError {
    fn from(error: AdmissionError) -> Self {
        match error {
            AdmissionError::Broker(error) => error.into(),
            AdmissionError::Store(error) => error.into(),
        }
    }
}

impl From<PasswordError> for ApiError {
    fn from(error: PasswordError) -> Self {
        match error {
            PasswordError::Saturated => {
                ApiError::Unavailable("too many password checks at once, retry later".into())
            }
            PasswordError::Hash(_) | PasswordError::Stopped => {
                log::error!("{error}");
                ApiError::Internal
            }
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(error: actix::MailboxError) -> Self {
        log::error!("realtime actor unreachable: {error}");
        ApiError::Unavailable("the realtime service is unavailable, retry later".into())
    }
}

/// JSON body errors: 413 past the limit, 400 for everything else.
pub fn json_error(error: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    if let JsonPayloadError::Payload(payload) = &error {
        if let Some(timed_out) = BodyTimedOut::within(payload) {
            return ApiError::BodyTimeout(*timed_out).into();
        }
    }
    let api = match &error {
        JsonPayloadError::Overflow { limit } => ApiError::PayloadTooLarge(*limit),
        JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::PayloadTooLarge(*limit),
        JsonPayloadError::Deserialize(inner) => {
            ApiError::BadRequest(format!("invalid JSON body: {inner}"))
        }
        other => ApiError::BadRequest(format!("invalid JSON body: {other}")),
    };
    api.into()
}

/// Path errors (a bad UUID in the URL): 400.
pub fn path_error(error: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid path parameter: {error}")).into()
}

/// Query string errors (missing or mistyped parameter): 400.
pub fn query_error(error: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query string: {error}")).into()
}

/// Unknown routes.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}

/// A known path asked with a method it does not serve: 405, naming the ones it does.
pub fn method_not_allowed(req: &HttpRequest, allowed: &'static str) -> ApiError {
    ApiError::MethodNotAllowed(req.method().to_string(), allowed)
}
