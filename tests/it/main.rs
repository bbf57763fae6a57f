//! herald's integration tests, one binary (one link step) for every suite: whole servers,
//! actors and the `herald` executable against the real PostgreSQL and RabbitMQ. `support`
//! comes first, so its `in_both_modes!` macro is in scope in the suites after it.

#[macro_use]
mod support;

mod abuse;
mod actors;
mod api;
mod browser;
mod cors;
mod failover;
mod faults;
mod feed;
mod feed_abuse;
mod hardening;
mod idempotency;
mod metrics;
mod outages;
mod process;
mod shards;
mod spec;
mod store;
mod tls;
mod transports;
