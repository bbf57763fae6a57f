//! The broker link and its routing: the connection to RabbitMQ and its reconnection
//! (`link`), the names herald declares there (`topology`), the `BrokerActor` that owns the link
//! (`actor`), and how this node's sessions get their events, by one queue per node
//! (`node_queue`, with celebrities' events under fixed `shards`) or one per session
//! (`session_queues`), chosen in one place (`queue_routing`).

pub mod actor;
pub mod error;
pub mod link;
pub mod node_queue;
pub mod pipeline;
pub mod queue_routing;
pub mod session_queues;
pub mod shards;
pub mod topology;
