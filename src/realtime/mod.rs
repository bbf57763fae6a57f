//! Real time: the WebSocket session actors, the registry of who is connected on this node, the
//! broker actor that carries events through RabbitMQ, the fan-out that publishes them, and the
//! watchdog that keeps sessions and queues honest.

pub mod broker;
pub mod events;
pub mod fanout;
pub mod messages;
pub mod registry;
pub mod session;
pub mod topology;
pub mod watchdog;

pub use broker::{BrokerActor, BrokerHealth};
pub use events::FeedEvent;
pub use registry::SessionRegistry;
pub use session::WsSession;
pub use watchdog::Watchdog;
