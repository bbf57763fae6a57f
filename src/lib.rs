//! herald: a social network backend whose users see their friends' posts the moment they
//! happen. An actix-web HTTP API writes to PostgreSQL; a WebSocket per user session receives
//! feed events routed through a RabbitMQ direct exchange.
//!
//! A map of the crate:
//!
//! - [`config`]: typed settings from `config/default.toml`, `HERALD_CONFIG` and `HERALD__*`,
//!   checked at start.
//! - [`startup`]: builds a whole server (database, broker link, realtime actors, HTTP) and
//!   stops it gracefully; `main` only parses the command line.
//! - [`http`]: the HTTP side: routes, extractors, the error contract, request ids, the body
//!   deadline, and what is kept of each TCP connection.
//! - [`auth`]: password hashing on its own bounded threads, login tokens, and the failed-login
//!   throttle.
//! - [`store`]: the PostgreSQL schema, row types and every query.
//! - [`realtime`]: WebSocket sessions, the session registry, the broker actor and its link,
//!   the fan-out and the watchdog (its opening comment shows one session's life).
//! - [`retry`]: retrying a start-up dependency with backoff, and masking URLs for logs.
//! - [`metrics`]: the Prometheus registry of one instance, rendered at `/metrics`.
//! - [`logging`]: `env_logger` with ceilings on the libraries that could print secrets.
//! - [`tls`]: the rustls configurations for herald's own connections (RabbitMQ, PostgreSQL).

pub mod auth;
pub mod config;
pub mod http;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod realtime;
pub mod retry;
pub mod startup;
pub mod store;
pub mod tls;
