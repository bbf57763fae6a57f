//! herald: a social network backend whose users see their friends' posts the moment they
//! happen. An actix-web HTTP API writes each change to PostgreSQL together with its event in a
//! feed log; a relay numbers the committed events (their positions, `seq`) and publishes them
//! through a RabbitMQ direct exchange; each user session (a JSON WebSocket, STOMP over a
//! WebSocket or SockJS, or Server-Sent Events) receives its events in position order, filling
//! any gap from the log.
//!
//! A map of the crate:
//!
//! - [`config`]: typed settings from `config/default.toml`, `HERALD_CONFIG` and `HERALD__*`,
//!   checked at start.
//! - [`startup`]: builds a whole server (database, broker link, realtime actors, HTTP) and
//!   stops it gracefully; `main` only parses the command line.
//! - [`http`]: the HTTP side: routes (the API, `/logout`, the feed's transports: the JSON
//!   socket, `/stomp`, `/sockjs`, SSE; `/health`, `/metrics`, the browser pages), extractors,
//!   the error contract, request ids, the body deadline, CORS, the client's address behind
//!   trusted proxies, `Idempotency-Key`, and what is kept of each TCP connection.
//! - [`auth`]: password hashing on its own bounded threads (logins first), login tokens, and
//!   the login throttle.
//! - [`limits`]: per-key counts in fixed windows, and the per-address limits on registration
//!   and search.
//! - [`store`]: the PostgreSQL schema, row types and every query, among them the feed log
//!   (`store::events`): each write records its event in the same transaction as its change.
//!   The feed log and the relay (below) are the publishing side; `store::epochs` keeps
//!   positions unique across a database failover.
//! - [`realtime`]: the relay (it numbers committed events and publishes them in position
//!   order with publisher confirms; one instance leads); the broker actor and its link, which
//!   route each local session's events to this node; the session core every session runs
//!   (admission and caps, position order, gap fills, resets, the registry, the watchdog, the
//!   token and epoch watches); and the transports that frame it: the JSON WebSocket, STOMP over
//!   WebSocket, SockJS (carrying STOMP) and Server-Sent Events (its opening comment shows one
//!   session's life).
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
