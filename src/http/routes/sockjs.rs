//! SockJS at `/sockjs` (§4), the server side of what `sockjs-client` 1.x speaks, carrying STOMP:
//! `GET /sockjs/info`; per session `/sockjs/<server>/<session>/` + `websocket` (a WebSocket
//! whose messages are SockJS frames), `xhr_streaming`, `xhr` with `xhr_send`, and
//! `eventsource`. The HTTP transports share one `SockJsSession` per session id; a receiving
//! request creates it, `xhr_send` to an unknown id is a 404. Token and `since` come from the
//! URL (`sockjs-client` keeps the query string on every request) or from CONNECT, as on
//! `/stomp`. Cross-origin pages are served as `http.cors_origins` says (the CORS middleware).

use actix::Actor;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::stomp_socket::{upgrade, StompStart};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::realtime::transport::sockjs::frames::Refused;
use crate::realtime::transport::sockjs::framing::SockJs;
use crate::realtime::transport::sockjs::http_session::{
    Attach, Incoming, Receiving, SockJsSession,
};
use crate::realtime::transport::stream_session::body_of;

/// SockJS answers are never cached.
const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";
const JAVASCRIPT: &str = "application/javascript; charset=UTF-8";
/// Frames a receiving response may have queued before its client counts as too slow.
const RESPONSE_FRAMES: usize = 64;

/// `GET /sockjs/info`.
pub async fn info() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json; charset=UTF-8")
        .insert_header((header::CACHE_CONTROL, NO_CACHE))
        .json(serde_json::json!({
            "websocket": true,
            "cookie_needed": false,
            "origins": ["*:*"],
            "entropy": rand::random::<u32>(),
        }))
}

/// `OPTIONS` on `/sockjs/info` and the `xhr` paths, without CORS (the middleware answers
/// cross-origin preflights).
pub async fn options(req: HttpRequest) -> HttpResponse {
    let methods = if req.path().ends_with("/info") {
        "OPTIONS, GET"
    } else {
        "OPTIONS, POST"
    };
    HttpResponse::NoContent()
        .insert_header((header::ALLOW, methods))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods))
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "31536000"))
        .finish()
}

/// The session id of `/sockjs/<server>/<session>/...`, checked as the protocol says (no dots,
/// not empty); 404 otherwise.
fn session_key(path: &(String, String)) -> Result<String, ApiError> {
    let fine = |part: &str| !part.is_empty() && part.len() <= 64 && !part.contains('.');
    if fine(&path.0) && fine(&path.1) {
        Ok(path.1.clone())
    } else {
        Err(ApiError::NotFound("no such SockJS session".into()))
    }
}

/// `GET /sockjs/<server>/<session>/websocket`.
pub async fn websocket(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    session_key(&path)?;
    upgrade(req, stream, state, SockJs::new).await
}

pub async fn xhr(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    receive(req, state, path, Receiving::Polling).await
}

pub async fn xhr_streaming(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    receive(req, state, path, Receiving::Streaming).await
}

pub async fn eventsource(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    receive(req, state, path, Receiving::EventSource).await
}

/// A receiving request: attaches to its session (starting it if new) and streams what it is
/// given.
async fn receive(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    kind: Receiving,
) -> Result<HttpResponse, ApiError> {
    let key = session_key(&path)?;
    let session = match state.sockjs.get(&key) {
        Some(session) => session,
        None => {
            if !state.sockjs.has_room() {
                return Err(ApiError::Unavailable(
                    "too many SockJS sessions, retry later".into(),
                ));
            }
            let start = StompStart::of(&req, &state)?;
            let (core, framing, admission) = start.parts(&state, Uuid::new_v4());
            let outbox_max = state.realtime.held_max() + 64;
            let session = SockJsSession::new(
                (key.clone(), state.sockjs.clone()),
                core,
                framing,
                admission,
                (state.realtime.session_mailbox, outbox_max),
            )
            .start();
            if state.sockjs.insert(&key, session.clone()).is_err() {
                return Err(ApiError::Unavailable(
                    "too many SockJS sessions, retry later".into(),
                ));
            }
            session
        }
    };
    let (body, receiver) = mpsc::channel::<Bytes>(RESPONSE_FRAMES);
    let (content_type, prelude) = match kind {
        Receiving::Streaming => (JAVASCRIPT, Some(format!("{}\n", "h".repeat(2048)))),
        Receiving::Polling => (JAVASCRIPT, None),
        Receiving::EventSource => ("text/event-stream", Some("\r\n".to_owned())),
    };
    if let Some(prelude) = prelude {
        let _ = body.try_send(Bytes::from(prelude));
    }
    session.do_send(Attach { kind, body });
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, NO_CACHE))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body_of(receiver)))
}

/// `POST /sockjs/<server>/<session>/xhr_send`: the client's messages.
pub async fn xhr_send(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let key = session_key(&path)?;
    let session = state
        .sockjs
        .get(&key)
        .ok_or_else(|| ApiError::NotFound("no such SockJS session".into()))?;
    let text_plain = "text/plain; charset=UTF-8";
    match session.send(Incoming(body)).await {
        Ok(Ok(())) => Ok(HttpResponse::NoContent()
            .content_type(text_plain)
            .insert_header((header::CACHE_CONTROL, NO_CACHE))
            .finish()),
        // The protocol's texts for a body it cannot read, as a 400 (the protocol says 500; a
        // client's mistake is a 4xx here, and sockjs-client reads neither).
        Ok(Err(Refused::Empty)) => Ok(HttpResponse::BadRequest()
            .content_type(text_plain)
            .body("Payload expected.")),
        Ok(Err(Refused::Broken)) => Ok(HttpResponse::BadRequest()
            .content_type(text_plain)
            .body("Broken JSON encoding.")),
        Err(_) => Err(ApiError::NotFound("no such SockJS session".into())),
    }
}
