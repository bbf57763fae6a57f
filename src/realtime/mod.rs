//! Real time: the WebSocket session actors, the registry of who is connected on this node, the
//! broker actor that carries events through RabbitMQ (a queue per node or per session: see
//! `realtime.queue_mode`), the fan-out that publishes them, and the watchdog that keeps
//! sessions, queues and bindings honest.
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

pub mod admission;
pub mod broker;
pub mod broker_error;
pub mod control;
pub mod epoch_watch;
pub mod events;
pub mod frame_guard;
pub mod history;
pub mod in_order;
pub mod link;
pub mod node_queue;
pub mod pipeline;
pub mod probes;
pub mod queue_routing;
pub mod registry;
pub mod relay;
pub mod relink;
pub mod routing;
pub mod session;
pub mod session_protocol;
pub mod session_queues;
pub mod stats;
pub mod topology;
pub mod trace;
pub mod watchdog;
pub mod write_watch;

pub use broker::BrokerActor;
pub use broker_error::BrokerError;
pub use events::FeedEvent;
pub use link::BrokerHealth;
pub use registry::SessionRegistry;
pub use session::WsSession;
pub use stats::{Stats, StatsSnapshot};
pub use watchdog::Watchdog;
