//! Test support: whole herald servers on random ports, each test with its own database and its
//! own exchange (dropped when the test ends, even if it fails), an HTTP client for the API,
//! a WebSocket feed client, probes that ask RabbitMQ directly what exists, private RabbitMQ
//! nodes and clusters for the tests that break their broker, for the TLS tests private
//! PostgreSQL servers and a certificate authority made in the test, and for the failover tests a
//! private primary with a streaming standby and a `socat` forwarder (`pg_cluster`).

mod app;
mod broker_probes;
pub mod certs;
mod feed_client;
pub mod forwarder;
mod node_client;
pub mod pg_cluster;
mod pg_node;
pub mod private_broker;
pub mod private_postgres;
mod settings;

use std::future::Future;
use std::time::{Duration, Instant};

pub use app::{Answer, TestApp, TestUser};
pub use broker_probes::{
    amqp, bound, celebrity_key, delete_queue, force_close_herald_connections, is_routed,
    publish_raw, queue_exists, queue_listing,
};
pub use feed_client::{assert_event, raw_close_reason, FeedClient, Received};
pub use node_client::NodeClient;
pub use private_broker::{PrivateBroker, PrivateCluster};
pub use settings::{test_settings, test_settings_in, Cleanup};

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Turns each named `async fn name(mode: QueueMode)` into two tests, `name::node` and
/// `name::session`: the realtime suite runs whole in both queue modes. (`#[macro_use] mod
/// support;` first in `main.rs` puts it in scope in every suite.)
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn node() {
                super::$name(herald::config::QueueMode::Node).await
            }

            #[actix_web::test]
            async fn session() {
                super::$name(herald::config::QueueMode::Session).await
            }
        }
    )*};
}

/// Runs `probe` every 25 ms until it holds or `DEADLINE` passes; returns whether it held.
pub async fn eventually<F, Fut>(probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(DEADLINE, probe).await
}

/// [`eventually`] with a deadline of its own, for conditions that by design take longer than
/// `DEADLINE` to come about (say, several rounds of a slow watchdog).
pub async fn eventually_within<F, Fut>(within: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if probe().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
