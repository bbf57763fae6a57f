//! `GET /stomp`: the feed over STOMP on a WebSocket (§4). The upgrade needs no token: the client
//! may authenticate in its CONNECT frame, and the session is admitted and registered only once
//! it has, on its first SUBSCRIBE. The handshake's token (`?token=`, `Authorization: Bearer`) and
//! resume position (`?since=`, `Last-Event-ID`) are used when CONNECT and SUBSCRIBE carry none.
//! Of the subprotocols `v10.stomp`, `v11.stomp`, `v12.stomp` the highest offered is chosen.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde::Deserialize;
use uuid::Uuid;

use super::feed_socket::{connection_socket, resume_position, token_grant};
use crate::http::auth::{bearer_token, grant};
use crate::http::cors::check_socket_origin;
use crate::http::error::ApiError;
use crate::http::routes::users::client_ip;
use crate::http::AppState;
use crate::realtime::session::caps::CapRefusal;
use crate::realtime::session::core::SessionCore;
use crate::realtime::session::write_watch::WriteWatch;
use crate::realtime::transport::frame_guard::FrameGuard;
use crate::realtime::transport::framing::Framing;
use crate::realtime::transport::in_band::{Admission, Authenticator, InBand, PlaceTaker};
use crate::realtime::transport::stomp::codec::Version;
use crate::realtime::transport::stomp::framing::{Stomp, StompSettings};
use crate::realtime::transport::ws_session::WsSession;

#[derive(Deserialize)]
struct StompQuery {
    token: Option<String>,
    since: Option<String>,
}

/// The STOMP subprotocols, highest first.
const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// The highest STOMP subprotocol the client offers, if any.
fn chosen_subprotocol(req: &HttpRequest) -> Option<&'static str> {
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|protocol| protocol.trim().to_ascii_lowercase())
        .collect();
    SUBPROTOCOLS
        .into_iter()
        .find(|protocol| offered.iter().any(|offer| offer == protocol))
}

/// Checks tokens for in-band sessions against the database.
pub fn token_checker(state: &AppState) -> Authenticator {
    let pool = state.pool.clone();
    Rc::new(move |token: String| {
        let pool = pool.clone();
        Box::pin(async move {
            match grant(&pool, &token).await {
                Ok(grant) => Ok(token_grant(grant)),
                Err(ApiError::Unauthorized) => Err("a missing, unknown or expired token".into()),
                Err(_) => Err("authentication is unavailable right now; try again".into()),
            }
        })
    })
}

/// Takes places under the session caps for in-band sessions from the client at `address`.
fn place_taker(state: &AppState, address: Option<IpAddr>) -> PlaceTaker {
    let caps = state.session_caps.clone();
    Rc::new(move |user_id| {
        caps.try_take(user_id, address).map_err(|why| match why {
            CapRefusal::User => "this user has as many feed sessions open as it may".to_owned(),
            CapRefusal::Address => {
                "this address has as many feed sessions open as it may".to_owned()
            }
            CapRefusal::Instance => "this server holds all the feed sessions it can".to_owned(),
        })
    })
}

/// What every in-band STOMP session starts from: the handshake's token and position, checked
/// and parsed the same way on every transport.
pub(crate) struct StompStart {
    pub token: Option<String>,
    pub since: Option<i64>,
    pub address: Option<IpAddr>,
}

impl StompStart {
    pub(crate) fn of(req: &HttpRequest, state: &AppState) -> Result<StompStart, ApiError> {
        let query = web::Query::<StompQuery>::from_query(req.query_string())
            .map(web::Query::into_inner)
            .unwrap_or(StompQuery {
                token: None,
                since: None,
            });
        Ok(StompStart {
            address: client_ip(req, state),
            since: resume_position(req, query.since.as_deref())?,
            token: bearer_token(req).or(query.token),
        })
    }

    /// The session core, the STOMP framing and the in-band admission of session `session_id`.
    pub(crate) fn parts(
        self,
        state: &AppState,
        session_id: Uuid,
    ) -> (SessionCore, Stomp, Admission) {
        let deps = state.feed_deps();
        let core = SessionCore::new(session_id, state.registry.clone(), deps);
        let framing = Stomp::new(StompSettings {
            max_frame: state.realtime.max_frame_bytes,
            heartbeat: state.realtime.ping_interval(),
            exchange: state.realtime.exchange.clone(),
            versions: vec![Version::V10, Version::V11, Version::V12],
        });
        let admission = Admission::InBand(InBand {
            pool: state.pool.clone(),
            authenticate: token_checker(state),
            token: self.token,
            since: self.since,
            deadline: state.realtime.client_timeout(),
            take_place: place_taker(state, self.address),
            token_watch: state.token_watch.clone(),
            grant: None,
        });
        (core, framing, admission)
    }
}

pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    upgrade(req, stream, state, |stomp| stomp).await
}

/// Upgrades to a WebSocket carrying STOMP, inside whatever `wrap` makes of it (SockJS frames).
pub(crate) async fn upgrade<F: Framing>(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    wrap: impl FnOnce(Stomp) -> F,
) -> Result<HttpResponse, ApiError> {
    check_socket_origin(&req, &state.origins)?;
    ws::handshake(&req)
        .map_err(|error| ApiError::BadRequest(format!("not a WebSocket upgrade: {error}")))?;
    let start = StompStart::of(&req, &state)?;
    let session_id = Uuid::new_v4();
    let max_frame = state.realtime.max_frame_bytes;
    let (stream, frame_limit) = FrameGuard::new(stream, max_frame);
    let watch = WriteWatch::new(connection_socket(&req, &state));
    let (core, framing, admission) = start.parts(&state, session_id);
    let core = core.with_write_watch(Some(Arc::clone(&watch)));
    let session = WsSession::new(
        core,
        wrap(framing),
        admission,
        state.realtime.session_mailbox,
    )
    .with_frame_limit(frame_limit);
    let protocols: Vec<&str> = chosen_subprotocol(&req).into_iter().collect();
    let response = ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(max_frame)
        .protocols(&protocols)
        .start()
        .map_err(|error| ApiError::BadRequest(format!("WebSocket upgrade failed: {error}")))?;
    Ok(response
        .map_body(|_, body| watch.watch_body(body))
        .map_into_boxed_body())
}
