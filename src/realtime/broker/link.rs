//! The broker link: the endpoints and their connection pools, opening a link (a connection with its two
//! channels, the exchange and, in node mode, this node's queue), closing one, and the shared
//! flag that says whether a link is up. `amqps://` endpoints connect over herald's own rustls
//! configuration (`amqp.ca_file`, and a client certificate if `amqp.cert_file` is set).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use lapin::options::{
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::tcp::RustlsConnector;
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{AsyncTcpStream, Channel, Connection, ConnectionProperties, ExchangeKind};
use uuid::Uuid;

use super::error::BrokerError;
use super::topology::{node_queue_arguments, node_queue_name};
use crate::config::{AmqpSettings, QueueMode, RealtimeSettings};
use crate::retry::redact;
use crate::tls::{self, CaSource, IdentityFiles, Verify};

/// Deliveries a session's consumer may hold unacked (session mode): enough to keep a socket
/// busy, small enough that a slow client leaves its backlog in its (length-capped) queue.
const SESSION_PREFETCH: u16 = 64;

/// How long opening a link on one endpoint may take before herald tries the next.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long closing a connection may take before herald gives up on a clean close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections kept per endpoint (a link uses one; the other is a spare while one reconnects).
const POOL_SIZE: usize = 2;

/// Names the failures an operator must act on (wrong user or password, a broker certificate
/// that does not verify) instead of quoting the pool's nested error.
fn pool_error(error: managed::PoolError<lapin::Error>) -> BrokerError {
    if let managed::PoolError::Backend(backend) = &error {
        match backend.kind() {
            lapin::ErrorKind::ProtocolError(amqp)
                if matches!(
                    amqp.kind(),
                    AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
                ) =>
            {
                return BrokerError::CredentialsRefused;
            }
            lapin::ErrorKind::IOError(io) if tls::is_certificate_refusal(io.as_ref()) => {
                return BrokerError::CertificateRefused(io.to_string());
            }
            _ => {}
        }
    }
    BrokerError::Pool(error.to_string())
}

/// Opens the connections of an `amqps://` endpoint's pool over herald's rustls configuration
/// (an `amqp://` one, should it get here, as lapin does by itself).
pub struct AmqpConnector {
    url: String,
    name: String,
    tls: Option<RustlsConnector>,
}

impl managed::Manager for AmqpConnector {
    type Type = Connection;
    type Error = lapin::Error;

    async fn create(&self) -> Result<Connection, lapin::Error> {
        let properties =
            ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        let runtime = lapin::runtime::default_runtime()?;
        let uri: AMQPUri = self
            .url
            .parse()
            .map_err(|e: String| lapin::Error::from(std::io::Error::other(e)))?;
        let Some(tls) = self.tls.clone().filter(|_| uri.scheme == AMQPScheme::AMQPS) else {
            return Connection::connect_uri_with_runtime(uri, properties, runtime).await;
        };
        Connection::connector(
            uri,
            runtime,
            async move |uri: AMQPUri, runtime| {
                let host = uri.authority.host.clone();
                let addresses = runtime.to_socket_addrs((host.clone(), uri.authority.port));
                let stream = AsyncTcpStream::connect(&runtime, addresses).await?;
                Ok(stream.into_rustls(&tls, &host).await?)
            },
            properties,
        )
        .await
    }

    async fn recycle(
        &self,
        connection: &mut Connection,
        _: &Metrics,
    ) -> RecycleResult<lapin::Error> {
        if connection.status().connected() {
            Ok(())
        } else {
            Err(RecycleError::message("the connection is closed"))
        }
    }
}

/// The TLS configuration for `amqps://` endpoints, if any endpoint is one.
fn amqps_connector(settings: &AmqpSettings) -> Result<Option<RustlsConnector>, BrokerError> {
    let secure = settings
        .endpoints()
        .iter()
        .any(|url| url::Url::parse(url.trim()).is_ok_and(|url| url.scheme() == "amqps"));
    if !secure {
        if settings.ca_file().is_some() || settings.cert_file().is_some() {
            log::warn!("amqp.ca_file and amqp.cert_file are only used by amqps:// URLs");
        }
        return Ok(None);
    }
    let ca = CaSource {
        setting: "amqp.ca_file",
        ca_file: settings.ca_file(),
    };
    let identity = settings
        .cert_file()
        .zip(settings.key_file())
        .map(|(cert_file, key_file)| IdentityFiles {
            cert_setting: "amqp.cert_file",
            cert_file,
            key_setting: "amqp.key_file",
            key_file,
        });
    let config = tls::client_config(Verify::Full, ca, identity)?;
    Ok(Some(RustlsConnector::from(config)))
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
    pub connection: PooledConnection,
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

/// The RabbitMQ endpoints herald may connect to (`amqp.urls`, or the one `amqp.url`), each
/// with its connection pool (connections are made on demand), tried in turn: a link lost with
/// one node of a cluster is reopened on the next. Connections are named `herald <exchange>`, so
/// operators (and tests) can tell deployments apart on a shared broker.
pub struct Endpoints {
    list: Vec<Endpoint>,
    /// The endpoint the next attempt starts with: the one that last worked, else the next.
    next: AtomicUsize,
}

struct Endpoint {
    /// The URL with its password masked, for log lines.
    shown: String,
    pool: EndpointPool,
}

/// One endpoint's connection pool: deadpool-lapin's for `amqp://`, herald's own manager for
/// `amqps://` (deadpool-lapin connects with lapin's default TLS settings only).
enum EndpointPool {
    Plain(deadpool_lapin::Pool),
    Tls(managed::Pool<AmqpConnector>),
}

impl EndpointPool {
    async fn get(&self) -> Result<PooledConnection, managed::PoolError<lapin::Error>> {
        Ok(match self {
            EndpointPool::Plain(pool) => PooledConnection::Plain(pool.get().await?),
            EndpointPool::Tls(pool) => PooledConnection::Tls(pool.get().await?),
        })
    }
}

/// A connection out of either kind of pool.
pub enum PooledConnection {
    Plain(deadpool_lapin::Object),
    Tls(managed::Object<AmqpConnector>),
}

impl PooledConnection {
    /// Takes the connection out of its pool (which then opens a fresh one when asked).
    fn take(self) -> Connection {
        match self {
            PooledConnection::Plain(object) => managed::Object::take(object),
            PooledConnection::Tls(object) => managed::Object::take(object),
        }
    }
}

impl std::ops::Deref for PooledConnection {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            PooledConnection::Plain(object) => object,
            PooledConnection::Tls(object) => object,
        }
    }
}

impl Endpoints {
    /// The endpoints' pools; reads `amqp.ca_file` (and the client certificate) if any endpoint
    /// is `amqps://`, so a file that cannot be used is reported here, at start.
    pub fn new(settings: &AmqpSettings, exchange: &str) -> Result<Self, BrokerError> {
        let tls = amqps_connector(settings)?;
        let list = settings
            .endpoints()
            .into_iter()
            .map(|url| {
                let name = format!("herald {exchange}");
                let secure = url::Url::parse(url.trim()).is_ok_and(|url| url.scheme() == "amqps");
                let pool = if secure {
                    let connector = AmqpConnector {
                        url: url.to_owned(),
                        name,
                        tls: tls.clone(),
                    };
                    EndpointPool::Tls(
                        managed::Pool::builder(connector)
                            .max_size(POOL_SIZE)
                            .runtime(deadpool::Runtime::Tokio1)
                            .build()
                            .map_err(|e| BrokerError::Pool(e.to_string()))?,
                    )
                } else {
                    let config = deadpool_lapin::Config {
                        url: Some(url.to_owned()),
                        pool: Some(deadpool_lapin::PoolConfig::new(POOL_SIZE)),
                    };
                    EndpointPool::Plain(
                        config
                            .create_pool(
                                move || {
                                    ConnectionProperties::default()
                                        .with_connection_name(name.as_str().into())
                                },
                                deadpool_lapin::Runtime::Tokio1,
                            )
                            .map_err(|e| BrokerError::Pool(e.to_string()))?,
                    )
                };
                Ok(Endpoint {
                    shown: redact(url),
                    pool,
                })
            })
            .collect::<Result<Vec<_>, BrokerError>>()?;
        Ok(Endpoints {
            list,
            next: AtomicUsize::new(0),
        })
    }

    /// The endpoints as a log line may show them.
    pub fn describe(&self) -> String {
        let shown: Vec<&str> = self.list.iter().map(|e| e.shown.as_str()).collect();
        match shown.as_slice() {
            [one] => format!("RabbitMQ at {one}"),
            many => format!("RabbitMQ (one of {})", many.join(", ")),
        }
    }
}

/// Opens a link on one endpoint: the one that worked last, or else the next in turn, so that
/// repeated attempts (see `retry`) go round every endpoint. Connects, opens both channels,
/// declares the exchange (durable, direct) and, in node mode, this node's queue (exclusive,
/// auto-delete, length-capped). Each link gets a queue of a new name: the old one may linger on
/// the broker until it notices the old connection is gone.
pub async fn open_link(
    endpoints: &Endpoints,
    settings: &RealtimeSettings,
) -> Result<Link, BrokerError> {
    let count = endpoints.list.len().max(1);
    let n = endpoints.next.load(Ordering::Relaxed) % count;
    let Some(endpoint) = endpoints.list.get(n) else {
        return Err(BrokerError::Unavailable);
    };
    // An endpoint that drops packets would hang a connect for minutes: give up on it in time
    // and try the next.
    let opened = tokio::time::timeout(CONNECT_TIMEOUT, open_on(&endpoint.pool, settings))
        .await
        .unwrap_or_else(|_| {
            Err(BrokerError::Pool(format!(
                "no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )))
        });
    match opened {
        Ok(link) => {
            if count > 1 {
                log::info!("RabbitMQ link opened on {}", endpoint.shown);
            }
            Ok(link)
        }
        Err(error) => {
            endpoints.next.store((n + 1) % count, Ordering::Relaxed);
            Err(match count {
                1 => error,
                _ => BrokerError::At(endpoint.shown.clone(), Box::new(error)),
            })
        }
    }
}

async fn open_on(pool: &EndpointPool, settings: &RealtimeSettings) -> Result<Link, BrokerError> {
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
    let connection = link.connection.take();
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
