//! Real time: the WebSocket session actors, the registry of who is connected on this node, the
//! broker actor that carries events through RabbitMQ (a queue per node or per session), the
//! fan-out that publishes them, and the watchdog that keeps sessions, queues and bindings honest.

pub mod broker;
pub mod control;
pub mod events;
pub mod fanout;
pub mod frame_guard;
pub mod messages;
pub mod node_queue;
pub mod pipeline;
pub mod registry;
pub mod session;
pub mod session_queues;
pub mod stats;
pub mod topology;
pub mod watchdog;
pub mod write_watch;

pub use broker::{BrokerActor, BrokerHealth};
pub use events::FeedEvent;
pub use registry::SessionRegistry;
pub use session::WsSession;
pub use stats::{Stats, StatsSnapshot};
pub use watchdog::Watchdog;
