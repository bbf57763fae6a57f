//! Real time: the WebSocket session actors, the registry of who is connected on this node, the
//! broker actor that carries events through RabbitMQ (a queue per node or per session: see
//! `realtime.queue_mode`), the fan-out that publishes them, and the watchdog that keeps
//! sessions, queues and bindings honest.
//!
//! Its rooms: `relay/` (the publishing side: the feed log to RabbitMQ), `broker/` (the link,
//! its topology and the node or session queues that route events here), `session/` (the
//! session core whatever the transport: admission, positions, gap fills, the registry, the
//! watchdog), `transport/` (the framings a client reads). Beside them: the wire's events and
//! control messages, the ports between registry and broker (`routing`), stats and traces.
//!
//! One session's life, as the WebSocket route (`http::routes::feed_socket`) drives it:
//!
//! ```text
//!  route                      SessionRegistry                BrokerActor (via BrokerPort)
//!  ─────                      ───────────────                ───────────
//!  token ok ── Admit ───────▶ entry (no actor yet) ─ RouteUser ─▶ hold user.<id> (node) or
//!                                                               declare its queue (session)
//!           ◀──────── Ok ──── UserRouted ◀────────── generation ─┘
//!  read celebrities followed
//!           ── WatchAuthors ▶ index them ─────── RouteAuthors ──▶ hold/bind author.<id>
//!  upgrade: WsSession starts
//!           ── Register ────▶ handle stored, backlog handed ─ AttachSession ─▶ consume its
//!                                                               queue (session mode)
//!  ... RouteEvent / ApplyControl (RegistryPort) ──▶ Deliver ──▶ WsSession ──▶ text frame
//!  session stops (or the watchdog, a full mailbox or a stalled socket ends it)
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
