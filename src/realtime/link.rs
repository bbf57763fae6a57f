//! The broker link: the AMQP connection pool, opening a link (a connection with its two
//! channels, the exchange and, in node mode, this node's queue), closing one, and the shared
//! flag that says whether a link is up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};
use uuid::Uuid;

use super::broker_error::BrokerError;
use super::topology::{node_queue_arguments, node_queue_name};
use crate::config::{AmqpSettings, QueueMode, RealtimeSettings};

/// Deliveries a session's consumer may hold unacked (session mode): enough to keep a socket
/// busy, small enough that a slow client leaves its backlog in its (length-capped) queue.
const SESSION_PREFETCH: u16 = 64;

/// How long closing a connection may take before herald gives up on a clean close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Names the one failure an operator must act on (wrong user or password) instead of quoting
/// the pool's nested error.
fn pool_error(error: deadpool_lapin::PoolError) -> BrokerError {
    if let deadpool_lapin::PoolError::Backend(backend) = &error {
        if let lapin::ErrorKind::ProtocolError(amqp) = backend.kind() {
            if matches!(
                amqp.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
            ) {
                return BrokerError::CredentialsRefused;
            }
        }
    }
    BrokerError::Pool(error.to_string())
}

/// Whether the broker link is up; cheap to read from any thread.
#[derive(Clone, Default)]
pub struct BrokerHealth(Arc<AtomicBool>);

impl BrokerHealth {
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed)
    }
}

/// A live connection with its two channels: one for topology and consuming, one for
/// publishing with confirms (so a slow confirm never delays an ack).
pub struct Link {
    pub connection: deadpool_lapin::Object,
    pub topology: Channel,
    pub publish: Channel,
    /// Node mode: this instance's queue, declared with the link.
    pub node_queue: Option<String>,
}

impl Link {
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
            && self.topology.status().connected()
            && self.publish.status().connected()
    }
}

/// Builds the AMQP connection pool (connections are made on demand). Connections are named
/// `herald <exchange>`, so operators (and tests) can tell deployments apart on a shared broker.
pub fn build_pool(
    settings: &AmqpSettings,
    exchange: &str,
) -> Result<deadpool_lapin::Pool, BrokerError> {
    let name = format!("herald {exchange}");
    let config = deadpool_lapin::Config {
        url: Some(settings.url.clone()),
        pool: Some(deadpool_lapin::PoolConfig::new(2)),
    };
    config
        .create_pool(
            move || {
                lapin::ConnectionProperties::default().with_connection_name(name.as_str().into())
            },
            deadpool_lapin::Runtime::Tokio1,
        )
        .map_err(|e| BrokerError::Pool(e.to_string()))
}

/// Connects, opens both channels, declares the exchange (durable, direct) and, in node mode,
/// this node's queue (exclusive, auto-delete, length-capped). Each link gets a queue of a new
/// name: the old one may linger on the broker until it notices the old connection is gone.
pub async fn open_link(
    pool: &deadpool_lapin::Pool,
    settings: &RealtimeSettings,
) -> Result<Link, BrokerError> {
    let connection = pool.get().await.map_err(pool_error)?;
    let topology = connection.create_channel().await?;
    let prefetch = match settings.queue_mode {
        QueueMode::Node => settings.node_prefetch,
        QueueMode::Session => SESSION_PREFETCH,
    };
    topology
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    topology
        .exchange_declare(
            settings.exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let node_queue = match settings.queue_mode {
        QueueMode::Node => {
            let node_queue = node_queue_name(&settings.exchange, Uuid::new_v4());
            topology
                .queue_declare(
                    node_queue.as_str().into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    node_queue_arguments(settings),
                )
                .await?;
            Some(node_queue)
        }
        QueueMode::Session => None,
    };
    let publish = connection.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(Link {
        connection,
        topology,
        publish,
        node_queue,
    })
}

/// Closes a link that failed, without waiting: it is taken out of the pool, so the next link is
/// a fresh connection with one listener.
pub fn abandon(link: Link) {
    let connection = deadpool_lapin::Object::take(link.connection);
    actix_rt::spawn(async move {
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            connection.close(320, "herald is reconnecting".into()),
        )
        .await;
    });
}

/// Closes a link for shutdown: waits for outstanding confirms, then closes the connection
/// (which drops every exclusive queue), within `CLOSE_TIMEOUT`.
pub async fn close(link: Link) {
    let close = async {
        let _ = link.publish.wait_for_confirms().await;
        link.connection
            .close(200, "herald shutting down".into())
            .await
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, close).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => log::warn!("closing the RabbitMQ connection: {error}"),
        Err(_) => log::warn!("closing the RabbitMQ connection timed out"),
    }
}
