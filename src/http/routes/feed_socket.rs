//! `GET /post/feed/posted`: the WebSocket upgrade. Before the upgrade completes, the origin
//! (when `http.cors_origins` is set) and the token are checked, the user's events are routed to this node, and so are those of the celebrities the
//! user follows: a client that is connected is subscribed, and one that is refused (401, 503)
//! leaves nothing behind. A client that resumes names the last position it has, as `?since=`
//! or the header `Last-Event-ID`; the session first sends what it missed after it (or
//! `feed.reset`). The client's bytes pass a `FrameGuard` (no frame above
//! `realtime.max_frame_bytes` is buffered), and the connection is watched for a client that
//! stops reading (`WriteWatch`).

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde::Deserialize;
use uuid::Uuid;

use crate::http::auth::{bearer_token, grant, Grant};
use crate::http::connection::ConnectionFd;
use crate::http::cors::check_socket_origin;
use crate::http::error::ApiError;
use crate::http::routes::users::client_ip;
use crate::http::AppState;
use crate::realtime::session::admission;
use crate::realtime::session::caps::{CapRefusal, SessionPermit};
use crate::realtime::session::core::{FeedStart, SessionCore, TokenGrant};
use crate::realtime::session::registry::Deregister;
use crate::realtime::session::write_watch::WriteWatch;
use crate::realtime::transport::frame_guard::FrameGuard;
use crate::realtime::transport::in_band::Admission;
use crate::realtime::transport::json::JsonFeed;
use crate::realtime::WsSession;

/// `Retry-After` of a session refused for a cap: a session of the user's may end by then.
const CAP_RETRY_SECS: u64 = 5;

#[derive(Deserialize)]
struct FeedQuery {
    token: Option<String>,
    since: Option<String>,
}

/// The position a resuming client names, from `?since=` or `Last-Event-ID` (the query wins).
pub(crate) fn resume_position(
    req: &HttpRequest,
    since: Option<&str>,
) -> Result<Option<i64>, ApiError> {
    let header = last_event_id(req);
    parse_position(since.or(header))
}

/// The header `Last-Event-ID`, if sent (`?` when it is not text, which no position is).
pub(crate) fn last_event_id(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("?"))
}

/// A resume position as the client wrote it: an integer >= 0, or a 400.
pub(crate) fn parse_position(text: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    match text.trim().parse::<i64>() {
        Ok(position) if position >= 0 => Ok(Some(position)),
        _ => Err(ApiError::BadRequest(
            "since (or Last-Event-ID) must be a feed position: an integer >= 0".into(),
        )),
    }
}

pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    check_socket_origin(&req, &state.origins)?;
    let (grant, since_query) = authenticated(&req, &state).await?;
    let user_id = grant.user_id;
    ws::handshake(&req)
        .map_err(|error| ApiError::BadRequest(format!("not a WebSocket upgrade: {error}")))?;
    let since = resume_position(&req, since_query.as_deref())?;
    let permit = take_place(&req, &state, user_id)?;

    let session_id = Uuid::new_v4();
    let head = admission::admit_from(
        &state.registry,
        &state.pool,
        session_id,
        user_id,
        grant.head,
    )
    .await?;
    let max_frame = state.realtime.max_frame_bytes;
    let (stream, frame_limit) = FrameGuard::new(stream, max_frame);
    let watch = WriteWatch::new(connection_socket(&req, &state));
    let deps = state.feed_deps();
    let mut core = SessionCore::new(session_id, state.registry.clone(), deps)
        .with_write_watch(Some(Arc::clone(&watch)));
    core.hold_permit(permit);
    core.watch_token(state.token_watch.clone(), token_grant(grant));
    let start = FeedStart::new(since, head);
    let session = WsSession::new(
        core,
        JsonFeed,
        Admission::Done { user_id, start },
        state.realtime.session_mailbox,
    )
    .with_frame_limit(frame_limit);
    let response = ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(max_frame)
        .start()
        .map_err(|error| {
            state.registry.do_send(Deregister { session_id });
            ApiError::BadRequest(format!("WebSocket upgrade failed: {error}"))
        })?;
    Ok(response
        .map_body(|_, body| watch.watch_body(body))
        .map_into_boxed_body())
}

/// The token a route-admitted session (the JSON socket, SSE) comes with, from
/// `Authorization: Bearer` or `?token=` (401 without a live one), and the URL's `since`.
pub(crate) async fn authenticated(
    req: &HttpRequest,
    state: &AppState,
) -> Result<(Grant, Option<String>), ApiError> {
    let query = web::Query::<FeedQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or(FeedQuery {
            token: None,
            since: None,
        });
    let token = bearer_token(req)
        .or(query.token)
        .ok_or(ApiError::Unauthorized)?;
    Ok((grant(&state.pool, &token).await?, query.since))
}

/// A place under the session caps for a session of `user_id` (429 or 503 without one).
pub(crate) fn take_place(
    req: &HttpRequest,
    state: &AppState,
    user_id: Uuid,
) -> Result<SessionPermit, ApiError> {
    state
        .session_caps
        .try_take(user_id, client_ip(req, state))
        .map_err(refused)
}

/// The session core's view of a token's grant.
pub(crate) fn token_grant(grant: Grant) -> TokenGrant {
    TokenGrant {
        user_id: grant.user_id,
        token_hash: grant.token_hash,
        expires_at: grant.expires_at,
    }
}

/// A session refused a place under the caps: 429 for the user's or the address's cap (wait for
/// one of theirs to end), 503 for the instance's.
pub(crate) fn refused(why: CapRefusal) -> ApiError {
    match why {
        CapRefusal::User => ApiError::TooManyRequests(
            CAP_RETRY_SECS,
            "this user has as many feed sessions open as it may",
        ),
        CapRefusal::Address => ApiError::TooManyRequests(
            CAP_RETRY_SECS,
            "this address has as many feed sessions open as it may",
        ),
        CapRefusal::Instance => {
            ApiError::Unavailable("this server holds all the feed sessions it can".into())
        }
    }
}

/// A duplicate of this connection's socket, for the session's write watch, with the configured
/// send buffer. `None` (the watch then only reports) if the connection's socket is unknown.
pub(crate) fn connection_socket(req: &HttpRequest, state: &AppState) -> Option<socket2::Socket> {
    let fd = req.conn_data::<ConnectionFd>()?;
    // SAFETY: called synchronously from the upgrade handler of this very connection.
    let socket = match unsafe { fd.duplicate() } {
        Ok(socket) => socket,
        Err(error) => {
            log::warn!("cannot watch a WebSocket's connection: {error}");
            return None;
        }
    };
    let buffer = state.realtime.socket_send_buffer_bytes;
    if buffer > 0 {
        if let Err(error) = socket.set_send_buffer_size(buffer) {
            log::warn!("cannot set a WebSocket's send buffer: {error}");
        }
    }
    Some(socket)
}
