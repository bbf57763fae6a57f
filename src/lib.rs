//! herald: a social network backend whose users see their friends' posts the moment they
//! happen. An actix-web HTTP API writes to PostgreSQL; a WebSocket per user session receives
//! feed events routed through a RabbitMQ direct exchange.

pub mod auth;
pub mod config;
pub mod http;
pub mod logging;
pub mod realtime;
pub mod retry;
pub mod startup;
pub mod store;
