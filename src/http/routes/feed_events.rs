//! `GET /post/feed/events`: the feed as Server-Sent Events (§5). The token is checked (401
//! without one) and the session admitted before the response starts, as for the WebSocket. A
//! resuming client names its position as `Last-Event-ID` (what `EventSource` sends when it
//! reconnects, to the same URL) or `?since=`; the header wins, since the URL's `since` is the
//! one the stream first opened with. The body is a bounded channel the session writes into: a
//! client that stops reading fills it and is dropped.

use actix::Actor;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::feed_socket::{
    authenticated, connection_socket, last_event_id, parse_position, take_place, token_grant,
};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::realtime::session::admission;
use crate::realtime::session::core::{FeedStart, SessionCore};
use crate::realtime::transport::sse::Sse;
use crate::realtime::transport::stream_session::{body_of, StreamSession};

pub async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (grant, since_query) = authenticated(&req, &state).await?;
    let user_id = grant.user_id;
    // `Last-Event-ID` first: EventSource reconnects to the URL it opened with.
    let since = parse_position(last_event_id(&req).or(since_query.as_deref()))?;
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
    // Only to shrink the send buffer as configured: a stream's actor never freezes, so it
    // needs no write watch.
    drop(connection_socket(&req, &state));
    let deps = state.feed_deps();
    let mut core = SessionCore::new(session_id, state.registry.clone(), deps);
    core.hold_permit(permit);
    core.watch_token(state.token_watch.clone(), token_grant(grant));
    let start = FeedStart::new(since, head);
    // Room for the largest fill (a gap of up to `held_max` events) plus live events behind it.
    let (body, receiver) = mpsc::channel::<Bytes>(state.realtime.held_max() + 64);
    let _ = body.try_send(Bytes::from(Sse::preamble()));
    StreamSession::new(
        core,
        Sse,
        (user_id, start),
        state.realtime.session_mailbox,
        body,
    )
    .start();
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body_of(receiver)))
}
