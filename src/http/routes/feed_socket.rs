//! `GET /post/feed/posted`: the WebSocket upgrade. The token is checked and the session's queue
//! declared and bound *before* the upgrade completes, so a client that is connected is
//! subscribed, and one that is refused (401, 503) leaves nothing behind.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde::Deserialize;
use uuid::Uuid;

use crate::http::auth::{authenticate, bearer_token};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::realtime::broker::{Detach, Prepare};
use crate::realtime::WsSession;

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let from_query = || {
        web::Query::<TokenQuery>::from_query(req.query_string())
            .ok()
            .and_then(|query| query.into_inner().token)
    };
    let token = bearer_token(&req)
        .or_else(from_query)
        .ok_or(ApiError::Unauthorized)?;
    let user_id = authenticate(&state.pool, &token).await?;
    ws::handshake(&req)
        .map_err(|error| ApiError::BadRequest(format!("not a WebSocket upgrade: {error}")))?;

    let session_id = Uuid::new_v4();
    state
        .broker
        .send(Prepare {
            session_id,
            user_id,
        })
        .await??;
    let session = WsSession::new(session_id, user_id, state.registry.clone());
    ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(state.max_frame_bytes)
        .start()
        .map_err(|error| {
            state.broker.do_send(Detach { session_id });
            ApiError::BadRequest(format!("WebSocket upgrade failed: {error}"))
        })
}
