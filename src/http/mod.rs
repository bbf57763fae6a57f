//! The HTTP side: routes, extractors, validation and the error contract. Handlers parse and
//! validate, call `store`, and hand post events to the `BrokerActor`; they hold no state.

pub mod auth;
pub mod body_deadline;
pub mod client_address;
pub mod connection;
pub mod cors;
pub mod error;
pub mod idempotency;
pub mod listeners;
pub mod metrics;
pub mod origins;
pub mod request_id;
pub mod routes;
pub mod validation;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, Resource, Route};

use crate::auth::hasher::Hasher;
use crate::auth::throttle::LoginThrottle;
use crate::config::{AuthSettings, RealtimeSettings};
use crate::limits::per_address::AddressLimiter;
use crate::metrics::Metrics;
use crate::realtime::relay::Relay;
use crate::realtime::session::caps::SessionCaps;
use crate::realtime::session::core::FeedDeps;
use crate::realtime::session::history::FeedHistory;
use crate::realtime::session::token_watch::TokenWatch;
use crate::realtime::transport::sockjs::http_session::SockJsSession;
use crate::realtime::transport::sockjs::sessions::SockJsSessions;
use crate::realtime::{BrokerHealth, SessionRegistry, Stats};
use crate::store::DbPool;

/// What every handler may reach, shared across workers.
pub struct AppState {
    pub pool: DbPool,
    pub relay: Relay,
    pub history: FeedHistory,
    pub registry: Addr<SessionRegistry>,
    pub broker_health: BrokerHealth,
    pub stats: Stats,
    pub metrics: Metrics,
    pub auth: AuthSettings,
    pub realtime: RealtimeSettings,
    pub hasher: Hasher,
    pub login_throttle: Arc<LoginThrottle>,
    pub body_timeout: Duration,
    /// `http.cors_origins`: who may open the feed socket from a browser.
    pub origins: cors::AllowedOrigins,
    /// This instance's SockJS sessions carried by HTTP requests.
    pub sockjs: SockJsSessions<SockJsSession>,
    /// `http.trusted_proxies`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: client_address::TrustedProxies,
    /// `auth.registrations_per_address`.
    pub registration_limit: AddressLimiter,
    /// `http.searches_per_address`.
    pub search_limit: AddressLimiter,
    /// `realtime.max_sessions_per_user`, `max_sessions_per_address`, `max_sessions`.
    pub session_caps: SessionCaps,
    /// Closes sessions whose token expires or is revoked.
    pub token_watch: Addr<TokenWatch>,
    /// How long a write's `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
}

impl AppState {
    /// What each feed session needs to fill its gaps, whatever its transport.
    pub(crate) fn feed_deps(&self) -> FeedDeps {
        FeedDeps {
            history: self.history.clone(),
            stats: self.stats.clone(),
            held_max: self.realtime.held_max(),
        }
    }
}

/// Mounts every route of the contract (plus `/health` and the browser client's files) and the
/// body and parameter limits.
pub fn configure(cfg: &mut web::ServiceConfig, body_limit: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(body_limit)
            .content_type_required(false)
            .error_handler(error::json_error),
    )
    .app_data(web::PayloadConfig::new(body_limit))
    .app_data(web::PathConfig::default().error_handler(error::path_error))
    .app_data(web::QueryConfig::default().error_handler(error::query_error))
    .service(one(
        "/user/register",
        "POST",
        web::post().to(routes::users::register),
    ))
    .service(one("/login", "POST", web::post().to(routes::users::login)))
    .service(one("/logout", "POST", web::post().to(auth::logout)))
    .service(one(
        "/user/get/{id}",
        "GET",
        web::get().to(routes::users::get),
    ))
    .service(one(
        "/user/search",
        "GET",
        web::get().to(routes::users::search),
    ))
    .service(one(
        "/friend/set/{user_id}",
        "PUT",
        web::put().to(routes::friends::set),
    ))
    .service(one(
        "/friend/delete/{user_id}",
        "PUT",
        web::put().to(routes::friends::delete),
    ))
    .service(one(
        "/post/create",
        "POST",
        web::post().to(routes::posts::create),
    ))
    .service(one(
        "/post/update",
        "PUT",
        web::put().to(routes::posts::update),
    ))
    .service(one(
        "/post/delete/{id}",
        "PUT",
        web::put().to(routes::posts::delete),
    ))
    .service(one(
        "/post/get/{id}",
        "GET",
        web::get().to(routes::posts::get),
    ))
    .service(one("/post/feed", "GET", web::get().to(routes::posts::feed)))
    .service(one(
        "/post/feed/posted",
        "GET",
        web::get().to(routes::feed_socket::connect),
    ))
    .service(one(
        "/post/feed/events",
        "GET",
        web::get().to(routes::feed_events::events),
    ))
    .service(
        web::resource("/sockjs/info")
            .route(web::get().to(routes::sockjs::info))
            .route(web::method(Method::OPTIONS).to(routes::sockjs::options)),
    )
    .service(one(
        "/sockjs/{server}/{session}/websocket",
        "GET",
        web::get().to(routes::sockjs::websocket),
    ))
    .service(sockjs_post(
        "/sockjs/{server}/{session}/xhr",
        web::post().to(routes::sockjs::xhr),
    ))
    .service(sockjs_post(
        "/sockjs/{server}/{session}/xhr_streaming",
        web::post().to(routes::sockjs::xhr_streaming),
    ))
    .service(sockjs_post(
        "/sockjs/{server}/{session}/xhr_send",
        web::post().to(routes::sockjs::xhr_send),
    ))
    .service(one(
        "/sockjs/{server}/{session}/eventsource",
        "GET",
        web::get().to(routes::sockjs::eventsource),
    ))
    .service(one(
        "/stomp",
        "GET",
        web::get().to(routes::stomp_socket::connect),
    ))
    .service(one("/health", "GET", web::get().to(routes::health::health)))
    .service(one(
        "/metrics",
        "GET",
        web::get().to(routes::metrics::metrics),
    ))
    .service(one("/", "GET", web::get().to(routes::client::index)))
    .service(one("/app.js", "GET", web::get().to(routes::client::script)))
    .service(one("/app.css", "GET", web::get().to(routes::client::style)))
    .service(one(
        "/stomp.html",
        "GET",
        web::get().to(routes::client::stomp_page),
    ))
    .service(one(
        "/stomp.js",
        "GET",
        web::get().to(routes::client::stomp_script),
    ))
    .service(one(
        "/vendor/sockjs.min.js",
        "GET",
        web::get().to(routes::client::sockjs_script),
    ))
    .service(one(
        "/vendor/stomp.umd.min.js",
        "GET",
        web::get().to(routes::client::stompjs_script),
    ))
    .service(one(
        "/vendor/sockjs-client.LICENSE",
        "GET",
        web::get().to(routes::client::sockjs_license),
    ))
    .service(one(
        "/vendor/stompjs.LICENSE",
        "GET",
        web::get().to(routes::client::stompjs_license),
    ));
}

/// A SockJS path served by POST, and by OPTIONS as the protocol asks.
fn sockjs_post(path: &str, route: Route) -> Resource {
    web::resource(path)
        .route(route)
        .route(web::method(Method::OPTIONS).to(routes::sockjs::options))
        .default_service(web::to(|req: HttpRequest| async move {
            Err::<HttpResponse, _>(error::method_not_allowed(&req, "POST"))
        }))
}

/// A path served by one method; any other method gets 405 with `Allow: <method>`.
fn one(path: &str, method: &'static str, route: Route) -> Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(move |req: HttpRequest| async move {
            Err::<HttpResponse, _>(error::method_not_allowed(&req, method))
        }))
}
