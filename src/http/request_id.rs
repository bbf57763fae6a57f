//! Request ids and error bodies. Every response carries `X-Request-Id` (the client's, if it sent
//! a sane one, else a fresh UUID), and every non-2xx response gets the contract's JSON body
//! `{"message", "request_id", "code"}`, whichever layer produced the error.

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::Error;
use serde::Serialize;
use uuid::Uuid;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// At most 128 characters of `[A-Za-z0-9._-]`: safe to echo into headers and logs.
fn is_sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: String,
    request_id: &'a str,
    code: u16,
}

/// The middleware (mounted with `actix_web::middleware::from_fn`).
pub async fn stamp(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_sane(value))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    // Handlers' and extractors' errors arrive here as responses (with `error()` set); this is
    // the innermost middleware but for the body deadline, which only wraps the payload, so
    // nothing below it returns `Err`.
    let response = next.call(req).await?.map_into_boxed_body();
    let status = response.status();
    // Errors get the contract's body; a handler that already wrote a body of its own keeps it.
    let bare = response.response().error().is_some()
        || matches!(
            response.response().body().size(),
            BodySize::None | BodySize::Sized(0)
        );
    let mut response = if bare && (status.is_client_error() || status.is_server_error()) {
        let message = response
            .response()
            .error()
            .map(|error| error.to_string())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        // A 503 is an expected answer under overload or an outage (whose cause is logged where
        // it is found); one line per refused request would flood the log exactly then.
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            log::error!("request {id} failed with {status}: {message}");
        }
        let body = serde_json::to_string(&ErrorBody {
            message,
            request_id: &id,
            code: status.as_u16(),
        })
        .unwrap_or_default();
        response.map_body(|head, _| {
            head.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            BoxBody::new(body)
        })
    } else {
        response
    };
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::is_sane;

    #[test]
    fn only_sane_ids_are_echoed() {
        assert!(is_sane("abc-123_X.y"));
        assert!(!is_sane(""));
        assert!(!is_sane("has space"));
        assert!(!is_sane("line\nbreak"));
        assert!(!is_sane(&"a".repeat(129)));
    }
}
