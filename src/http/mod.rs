//! The HTTP side: routes, extractors, validation and the error contract. Handlers parse and
//! validate, call `store`, and hand post events to the `BrokerActor`; they hold no state.

pub mod auth;
pub mod error;
pub mod request_id;
pub mod routes;
pub mod validation;

use actix::Addr;
use actix_web::web;

use crate::config::{AuthSettings, RealtimeSettings};
use crate::realtime::{BrokerActor, BrokerHealth, SessionRegistry, Stats};
use crate::store::DbPool;

/// What every handler may reach, shared across workers.
pub struct AppState {
    pub pool: DbPool,
    pub broker: Addr<BrokerActor>,
    pub registry: Addr<SessionRegistry>,
    pub broker_health: BrokerHealth,
    pub stats: Stats,
    pub auth: AuthSettings,
    pub realtime: RealtimeSettings,
}

/// Mounts every route of the contract (plus `/health`) and the body and parameter limits.
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
    .route("/user/register", web::post().to(routes::users::register))
    .route("/login", web::post().to(routes::users::login))
    .route("/user/get/{id}", web::get().to(routes::users::get))
    .route("/user/search", web::get().to(routes::users::search))
    .route("/friend/set/{user_id}", web::put().to(routes::friends::set))
    .route(
        "/friend/delete/{user_id}",
        web::put().to(routes::friends::delete),
    )
    .route("/post/create", web::post().to(routes::posts::create))
    .route("/post/update", web::put().to(routes::posts::update))
    .route("/post/delete/{id}", web::put().to(routes::posts::delete))
    .route("/post/get/{id}", web::get().to(routes::posts::get))
    .route("/post/feed", web::get().to(routes::posts::feed))
    .route(
        "/post/feed/posted",
        web::get().to(routes::feed_socket::connect),
    )
    .route("/health", web::get().to(routes::health::health));
}
