//! Cross-origin requests from browsers (`http.cors_origins`). Empty (the default): no CORS
//! headers at all, and no `Origin` is checked. Otherwise, for the origins listed:
//!
//! - preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) are answered 200
//!   with the methods the API serves, the `Authorization`, `Content-Type` and `X-Request-Id`
//!   request headers, and an hour's `Access-Control-Max-Age`; a preflight from another origin,
//!   or asking for another method or header, gets 403 (400 if malformed), with the usual JSON
//!   error body;
//! - responses to those origins carry `Access-Control-Allow-Origin` and expose `X-Feed-Seq`,
//!   `X-Request-Id` and `Retry-After`; a request from another origin is served as before, only
//!   without them (the browser then keeps the response from the page);
//! - a WebSocket upgrade (`/post/feed/posted`) whose `Origin` is neither listed nor herald's own
//!   (the page herald serves at `/`: the origin's host and port are the request's `Host`) is
//!   refused with 403: browsers apply no same-origin rule to WebSockets, so the server must.
//!
//! A request without `Origin` (curl, native clients) is never affected. `*` as the only entry
//! admits every origin (`Access-Control-Allow-Origin: *`): herald authenticates with bearer
//! tokens, never cookies, so a page can only act with a token it was given. No credentials
//! mode is offered.

use actix_cors::{Cors, CorsError};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::HttpRequest;

pub use super::origins::AllowedOrigins;

use super::error::ApiError;
use super::request_id::X_REQUEST_ID;

/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE_SECS: usize = 3600;

/// `X-Feed-Seq` (`FEED_SEQ_HEADER`), as a header name.
const FEED_SEQ: header::HeaderName = header::HeaderName::from_static("x-feed-seq");

impl AllowedOrigins {
    /// The middleware, for an `Off` list too (then `Condition` keeps it out of the way).
    pub fn middleware(&self) -> Cors {
        let cors = Cors::default()
            .allowed_methods([Method::GET, Method::POST, Method::PUT])
            .allowed_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                X_REQUEST_ID,
                header::HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([
                FEED_SEQ,
                X_REQUEST_ID,
                header::RETRY_AFTER,
                header::HeaderName::from_static("idempotent-replayed"),
            ])
            .max_age(PREFLIGHT_MAX_AGE_SECS);
        match self {
            AllowedOrigins::Off => cors,
            AllowedOrigins::Any => cors.allow_any_origin().send_wildcard(),
            AllowedOrigins::Listed(listed) => listed
                .iter()
                .fold(cors, |cors, origin| cors.allowed_origin(origin)),
        }
    }
}

/// Turns the CORS middleware's refusals into the API's own errors: 403 for an origin, method or
/// header not allowed, 400 for a malformed preflight, with the JSON body every error gets.
/// Mounted just outside the CORS middleware (inside `request_id::stamp`).
pub async fn refusals(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = next.call(req).await?;
    let api = response
        .response()
        .error()
        .and_then(|error| error.as_error::<CorsError>())
        .map(|error| match error {
            CorsError::OriginNotAllowed
            | CorsError::MethodNotAllowed
            | CorsError::HeadersNotAllowed => ApiError::Forbidden(format!("CORS: {error}")),
            other => ApiError::BadRequest(format!("CORS: {other}")),
        });
    Ok(match api {
        Some(api) => {
            let (req, _) = response.into_parts();
            ServiceResponse::from_err(api, req).map_into_boxed_body()
        }
        None => response.map_into_boxed_body(),
    })
}

/// 403 for a WebSocket upgrade from an origin `http.cors_origins` does not list, unless it is
/// herald's own (its page at `/`).
pub fn check_socket_origin(req: &HttpRequest, allowed: &AllowedOrigins) -> Result<(), ApiError> {
    let origin = req.headers().get(header::ORIGIN);
    if allowed.admits(origin) || origin.is_some_and(|origin| same_origin(origin, req)) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "this origin may not open the feed (see http.cors_origins)".into(),
        ))
    }
}

/// Whether `origin` names the host and port this request was sent to (its `Host`): a page
/// herald served itself.
fn same_origin(origin: &header::HeaderValue, req: &HttpRequest) -> bool {
    let Some(host) = req.headers().get(header::HOST) else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    let Ok(origin) = url::Url::parse(origin) else {
        return false;
    };
    // The Host header read with the origin's scheme, so that a missing port means the same
    // default on both sides.
    let Ok(requested) = url::Url::parse(&format!("{}://{host}", origin.scheme())) else {
        return false;
    };
    origin.host().is_some()
        && origin.host() == requested.host()
        && origin.port_or_known_default() == requested.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::{AllowedOrigins, FEED_SEQ};
    use crate::http::routes::posts::FEED_SEQ_HEADER;

    #[test]
    fn the_exposed_feed_header_is_the_one_the_feed_writes() {
        assert!(FEED_SEQ.as_str().eq_ignore_ascii_case(FEED_SEQ_HEADER));
    }

    fn parse(entries: &[&str]) -> Result<AllowedOrigins, String> {
        AllowedOrigins::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn origins_are_read_as_browsers_send_them() {
        assert_eq!(parse(&[]), Ok(AllowedOrigins::Off));
        assert_eq!(parse(&[" "]), Ok(AllowedOrigins::Off));
        assert_eq!(parse(&["*"]), Ok(AllowedOrigins::Any));
        assert_eq!(
            parse(&["https://App.Example.com:443/", "http://localhost:3000"]),
            Ok(AllowedOrigins::Listed(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into()
            ]))
        );
        for bad in [
            "app.example.com",
            "ftp://example.com",
            "https://example.com/app",
            "https://u:p@example.com",
            "https://example.com?x=1",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
        assert!(parse(&["*", "https://example.com"]).is_err());
    }

    #[test]
    fn a_page_herald_served_itself_may_open_the_feed() {
        use actix_web::test::TestRequest;
        let listed = parse(&["https://app.example.com"]).expect("valid");
        let from = |origin: &str, host: &str| {
            let req = TestRequest::get()
                .insert_header(("Origin", origin))
                .insert_header(("Host", host))
                .to_http_request();
            super::check_socket_origin(&req, &listed).is_ok()
        };
        assert!(from("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(from("https://herald.example.com", "herald.example.com"));
        assert!(from("https://herald.example.com", "herald.example.com:443"));
        assert!(!from(
            "https://herald.example.com",
            "herald.example.com:8443"
        ));
        assert!(!from("https://evil.example.com", "herald.example.com"));
        assert!(!from("null", "herald.example.com"));
        assert!(from("https://app.example.com", "herald.example.com"));
    }

    #[test]
    fn the_socket_checks_origin_only_when_cors_is_on() {
        let listed = parse(&["https://app.example.com"]).expect("valid");
        let good = HeaderValue::from_static("https://app.example.com");
        let evil = HeaderValue::from_static("https://evil.example.com");
        assert!(listed.admits(Some(&good)));
        assert!(!listed.admits(Some(&evil)));
        assert!(listed.admits(None));
        assert!(AllowedOrigins::Off.admits(Some(&evil)));
        assert!(AllowedOrigins::Any.admits(Some(&evil)));
    }
}
