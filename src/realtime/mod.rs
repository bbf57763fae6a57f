//! Real time: the relay that carries the feed log to RabbitMQ, the broker actor that brings each
//! node its events (a queue per node or per session: see `realtime.queue_mode`), the registry of
//! who is connected on this node, the session core every session runs, whatever its transport,
//! and the transports: the JSON WebSocket, STOMP over a WebSocket, SockJS (its WebSocket and its
//! HTTP transports, carrying STOMP) and Server-Sent Events.
//!
//! Its rooms: `relay/` (the publishing side), `broker/` (the link, its topology and the node or
//! session queues that route events here), `session/` (the core: admission, caps, positions,
//! gap fills, the registry, the watchdog, the token watch), `transport/` (framings, and the
//! actors that run them). Beside them: the wire's events and control messages, the ports
//! between registry and broker (`routing`), stats and traces.
//!
//! ```text
//!  POST /post/create ──▶ feed log (PostgreSQL) ──▶ relay/ ──▶ exchange ──▶ broker/ (node or
//!                                                   (leader only)            session queues)
//!                                                                              │ RouteEvent
//!  transport/ (one actor per connection, each owning a session::core::SessionCore)  ▼
//!  ─────────────────────────────────────────────────────────────    session/registry
//!  WsSession<JsonFeed>       GET /post/feed/posted   JSON frames  ◀── Deliver ──┤
//!  WsSession<Stomp>          GET /stomp              STOMP        ◀── Deliver ──┤
//!  WsSession<SockJs<Stomp>>  /sockjs/…/websocket     a["MESSAGE…"] ◀─ Deliver ──┤
//!  SockJsSession (Stomp)     /sockjs/…/xhr*, eventsource          ◀── Deliver ──┤
//!  StreamSession<Sse>        GET /post/feed/events   id/event/data ◀─ Deliver ──┘
//! ```
//!
//! One session's life, the same on every transport. The JSON socket and SSE routes admit before
//! the connection is accepted; STOMP (on `/stomp` or inside SockJS) authenticates on CONNECT and
//! is admitted on its first SUBSCRIBE (`transport::in_band`):
//!
//! ```text
//!  admission                  SessionRegistry                BrokerActor (via BrokerPort)
//!  ─────────                  ───────────────                ───────────
//!  token ok, cap taken
//!           ── Admit ───────▶ entry (no actor yet) ─ RouteUser ─▶ hold user.<id> (node) or
//!                                                               declare its queue (session)
//!           ◀──────── Ok ──── UserRouted ◀────────── generation ─┘
//!  read celebrities followed
//!           ── WatchAuthors ▶ index them ─────── RouteAuthors ──▶ hold/bind author.<id>
//!  SessionCore::register
//!           ── Register ────▶ handle stored, backlog handed ─ AttachSession ─▶ consume its
//!                                                               queue (session mode)
//!  ... RouteEvent / ApplyControl (RegistryPort) ──▶ HandOut, one per worker thread ──▶
//!      that thread's WorkerHub ──▶ Deliver ──▶ core (InOrder, fills) ──▶ the transport's
//!      framing ──▶ client
//!  session stops (the watchdog, a full mailbox, a stalled socket, 4001, or the client ends it)
//!           ── Deregister ──▶ forget it ───────── ReleaseSession ─▶ release its holds/queue
//! ```
//!
//! The registry and the broker never import each other: each holds the other's port of
//! `Recipient`s (`routing`), wired in `startup`.

pub mod broker;
pub mod control;
pub mod events;
pub mod probes;
pub mod relay;
pub mod routing;
pub mod session;
pub mod stats;
pub mod trace;
pub mod transport;

pub use broker::actor::BrokerActor;
pub use broker::error::BrokerError;
pub use broker::link::BrokerHealth;
pub use events::FeedEvent;
pub use session::registry::SessionRegistry;
pub use session::watchdog::Watchdog;
pub use stats::{Stats, StatsSnapshot};
pub use transport::ws_session::WsSession;
