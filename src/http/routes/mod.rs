//! One file per resource of the contract, and the browser client (`client`).

pub mod client;
pub mod feed_events;
pub mod feed_socket;
pub mod friends;
pub mod health;
pub mod metrics;
pub mod posts;
pub mod sockjs;
pub mod stomp_socket;
pub mod users;
