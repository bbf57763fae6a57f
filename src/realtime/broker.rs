//! `BrokerActor`: owns herald's AMQP connection (from a deadpool-lapin pool) and its channels,
//! declares the durable direct exchange, keeps the routing that brings each local session its
//! events (a node queue with per-user and per-celebrity bindings, or a queue per session: see
//! `realtime.queue_mode`), and hands post events to the fan-out.
//!
//! If the connection is lost, every session is closed (1013, "try again"), since the exclusive
//! queues died with the connection, and the actor reconnects with backoff.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use futures_util::StreamExt;
use lapin::options::{
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};
use tokio::sync::watch;
use uuid::Uuid;

use super::fanout::{self, Fanout, FanoutJob};
use super::messages::SessionHandle;
use super::node_queue::{self, NodeBindings};
use super::registry::{LinkLost, SessionRegistry};
use super::session_queues::{self, SessionQueues};
use super::stats::Stats;
use super::topology::{
    author_routing_key, node_queue as node_queue_name, node_queue_arguments, user_routing_key,
};
use crate::config::{AmqpSettings, QueueMode, RealtimeSettings};
use crate::retry;
use crate::store::DbPool;

/// Deliveries a session's consumer may hold unacked (session mode): enough to keep a socket
/// busy, small enough that a slow client leaves its backlog in its (length-capped) queue.
const SESSION_PREFETCH: u16 = 64;

/// How long closing a connection may take before herald gives up on a clean close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error("the event broker is unavailable")]
    Unavailable,
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("AMQP connection pool: {0}")]
    Pool(String),
    #[error(
        "the broker refused the credentials (ACCESS_REFUSED): check amqp.url's user and password"
    )]
    CredentialsRefused,
}

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

    fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed)
    }
}

/// A live connection with its two channels: one for topology and consuming, one for
/// publishing with confirms (so a slow confirm never delays an ack).
pub struct Link {
    connection: deadpool_lapin::Object,
    topology: Channel,
    publish: Channel,
    /// Node mode: this instance's queue, declared with the link.
    node_queue: Option<String>,
}

impl Link {
    fn is_connected(&self) -> bool {
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

/// Where this node's sessions get their events from.
enum Routing {
    Node(NodeBindings),
    Session(SessionQueues),
}

pub struct BrokerActor {
    settings: RealtimeSettings,
    pool: deadpool_lapin::Pool,
    link: Option<Link>,
    registry: Addr<SessionRegistry>,
    routing: Routing,
    health: BrokerHealth,
    stats: Stats,
    publish_channel: watch::Sender<Option<Channel>>,
    fanout: Fanout,
    /// Bumped on every new link, so events from an old connection are ignored, and so are
    /// releases of holds taken on an old connection.
    generation: u64,
}

/// What [`BrokerActor::start_with_registry`] returns: the two actors, and the shared views of
/// the link's health and the node's counters.
pub struct Started {
    pub broker: Addr<BrokerActor>,
    pub registry: Addr<SessionRegistry>,
    pub health: BrokerHealth,
    pub stats: Stats,
}

impl BrokerActor {
    /// Starts the broker and the session registry (they refer to each other) on the current
    /// arbiter, with a link already open (from [`open_link`]).
    pub fn start_with_registry(
        settings: RealtimeSettings,
        pool: deadpool_lapin::Pool,
        link: Link,
        db: DbPool,
    ) -> Started {
        let health = BrokerHealth::default();
        let stats = Stats::default();
        let (publish_channel, publish_rx) = watch::channel(None);
        let fanout = fanout::spawn(db, &settings, publish_rx, stats.clone());
        let routing = match settings.queue_mode {
            QueueMode::Node => Routing::Node(NodeBindings::default()),
            QueueMode::Session => Routing::Session(SessionQueues::default()),
        };
        // The two actors refer to each other: make the broker's context (and so its address)
        // first, start the registry with it, then run the broker in that context.
        let context = Context::new();
        let registry =
            SessionRegistry::new(context.address(), settings.queue_mode, stats.clone()).start();
        let broker = context.run(BrokerActor {
            settings,
            pool,
            link: None,
            registry: registry.clone(),
            routing,
            health: health.clone(),
            stats: stats.clone(),
            publish_channel,
            fanout,
            generation: 0,
        });
        broker.do_send(LinkUp(link));
        Started {
            broker,
            registry,
            health,
            stats,
        }
    }

    fn topology_channel(&self) -> Result<Channel, BrokerError> {
        match &self.link {
            Some(link) if link.is_connected() => Ok(link.topology.clone()),
            _ => Err(BrokerError::Unavailable),
        }
    }

    fn link_lost(&mut self, ctx: &mut Context<Self>, why: &str) {
        let Some(link) = self.link.take() else {
            return;
        };
        // The connection may still be open (a channel error also ends the link). Take it out of
        // the pool and close it, so the next link is a fresh connection with one listener.
        let connection = deadpool_lapin::Object::take(link.connection);
        actix_rt::spawn(async move {
            let _ = tokio::time::timeout(
                CLOSE_TIMEOUT,
                connection.close(320, "herald is reconnecting".into()),
            )
            .await;
        });
        log::error!("lost the RabbitMQ connection ({why}); closing sessions and reconnecting");
        self.health.set(false);
        self.publish_channel.send_replace(None);
        match &mut self.routing {
            Routing::Node(bindings) => bindings.link_down(),
            Routing::Session(queues) => queues.clear(),
        }
        self.registry.do_send(LinkLost);
        let pool = self.pool.clone();
        let settings = self.settings.clone();
        ctx.spawn(
            async move { retry::with_backoff("RabbitMQ", || open_link(&pool, &settings)).await }
                .into_actor(self)
                .map(|link, _, ctx| ctx.notify(LinkUp(link))),
        );
    }

    fn author_keys(authors: &[Uuid]) -> impl Iterator<Item = String> + '_ {
        authors.iter().map(|author| author_routing_key(*author))
    }
}

impl Actor for BrokerActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.health.set(false);
    }
}

/// A (re)opened connection takes over.
#[derive(Message)]
#[rtype(result = "()")]
struct LinkUp(Link);

impl Handler<LinkUp> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: LinkUp, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let link = msg.0;
        ctx.add_stream(
            link.connection
                .events_listener()
                .map(move |event| LinkEvent(generation, event)),
        );
        if let (Routing::Node(bindings), Some(queue)) = (&mut self.routing, &link.node_queue) {
            bindings.link_up(
                link.topology.clone(),
                self.settings.exchange.clone(),
                queue.clone(),
            );
            actix_rt::spawn(node_queue::consume(
                link.topology.clone(),
                queue.clone(),
                self.registry.clone(),
                ctx.address(),
                self.stats.clone(),
                generation,
            ));
        }
        self.publish_channel
            .send_replace(Some(link.publish.clone()));
        self.link = Some(link);
        self.health.set(true);
        log::info!(
            "connected to RabbitMQ ({} queue mode)",
            self.settings.queue_mode.as_str()
        );
    }
}

struct LinkEvent(u64, lapin::Event);

impl StreamHandler<LinkEvent> for BrokerActor {
    fn handle(&mut self, LinkEvent(generation, event): LinkEvent, ctx: &mut Context<Self>) {
        if generation != self.generation {
            return;
        }
        match event {
            lapin::Event::Error(error) => self.link_lost(ctx, &error.to_string()),
            lapin::Event::ConnectionBlocked(reason) => {
                log::warn!("RabbitMQ blocked publishing: {reason}")
            }
            lapin::Event::ConnectionUnblocked => log::info!("RabbitMQ unblocked publishing"),
            _ => {}
        }
    }

    // An ended event stream says nothing by itself; errors arrive as events.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// The node queue's consumer stopped (its queue was deleted, or its channel failed): without it
/// no session on this node hears anything, so the link is rebuilt.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConsumerEnded {
    pub generation: u64,
    pub why: String,
}

impl Handler<ConsumerEnded> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: ConsumerEnded, ctx: &mut Context<Self>) {
        if msg.generation == self.generation {
            self.link_lost(ctx, &msg.why);
        }
    }
}

/// Makes sure a session about to start will receive its user's events: binds `user.<id>` to the
/// node queue (node mode) or declares and binds the session's own queue (session mode). Resolves
/// once the binding is in place, with the link generation the hold belongs to.
#[derive(Message)]
#[rtype(result = "Result<u64, BrokerError>")]
pub struct Subscribe {
    pub session_id: Uuid,
    pub user_id: Uuid,
}

// Waiting is done in plain futures (`ResponseFuture`), not actor futures: an actor polls every
// pending actor future each time it wakes, so thousands of admissions in flight would make each
// message cost thousands of polls. What must touch the actor's state afterwards comes back as a
// message.
impl Handler<Subscribe> for BrokerActor {
    type Result = ResponseFuture<Result<u64, BrokerError>>;

    fn handle(&mut self, msg: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        let channel = match self.topology_channel() {
            Ok(channel) => channel,
            Err(error) => return Box::pin(async { Err(error) }),
        };
        let generation = self.generation;
        let broker = ctx.address();
        match &mut self.routing {
            Routing::Node(bindings) => {
                let key = user_routing_key(msg.user_id);
                let ready = bindings.retain(key.clone());
                Box::pin(async move {
                    match ready.await {
                        Ok(()) => Ok(generation),
                        Err(error) => {
                            broker.do_send(Release {
                                keys: vec![key],
                                generation,
                            });
                            Err(error)
                        }
                    }
                })
            }
            Routing::Session(_) => {
                let settings = self.settings.clone();
                Box::pin(async move {
                    let queue =
                        session_queues::declare(channel, &settings, msg.session_id, msg.user_id)
                            .await?;
                    broker
                        .send(Prepared {
                            session_id: msg.session_id,
                            queue,
                            generation,
                        })
                        .await
                        .unwrap_or(Err(BrokerError::Unavailable))?;
                    Ok(generation)
                })
            }
        }
    }
}

/// Node mode: drops holds taken for a subscription that failed.
#[derive(Message)]
#[rtype(result = "()")]
struct Release {
    keys: Vec<String>,
    generation: u64,
}

impl Handler<Release> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        if let (Routing::Node(bindings), true) =
            (&mut self.routing, msg.generation == self.generation)
        {
            for key in &msg.keys {
                bindings.release(key);
            }
        }
    }
}

/// Session mode: a session's queue is declared and bound; record it, unless the link it was
/// declared on is gone (and the queue with it: the client must retry).
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
struct Prepared {
    session_id: Uuid,
    queue: String,
    generation: u64,
}

impl Handler<Prepared> for BrokerActor {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, msg: Prepared, _: &mut Context<Self>) -> Self::Result {
        if msg.generation != self.generation || self.link.is_none() {
            return Err(BrokerError::Unavailable);
        }
        if let Routing::Session(queues) = &mut self.routing {
            queues.prepared(msg.session_id, msg.queue);
        }
        Ok(())
    }
}

/// Routes the events of these celebrity authors to a session: holds `author.<id>` on the node
/// queue (node mode) or binds it to the session's queue (session mode). Resolves once bound.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Watch {
    pub session_id: Uuid,
    pub authors: Vec<Uuid>,
    pub generation: u64,
}

impl Handler<Watch> for BrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: Watch, _: &mut Context<Self>) -> Self::Result {
        if msg.generation != self.generation {
            return Box::pin(async { Err(BrokerError::Unavailable) });
        }
        let channel = self.topology_channel();
        match &mut self.routing {
            // Holds are counted even when the bind cannot happen (the link is going down), so
            // the session's later release balances them.
            Routing::Node(bindings) => {
                let ready: Vec<_> = Self::author_keys(&msg.authors)
                    .map(|key| bindings.retain(key))
                    .collect();
                Box::pin(async move { join_all(ready).await.into_iter().collect() })
            }
            Routing::Session(queues) => {
                let (Ok(channel), Some(queue)) = (channel, queues.queue_of(msg.session_id)) else {
                    return Box::pin(async { Err(BrokerError::Unavailable) });
                };
                let exchange = self.settings.exchange.clone();
                let keys: Vec<String> = Self::author_keys(&msg.authors).collect();
                Box::pin(async move {
                    for key in keys {
                        session_queues::bind(&channel, &queue, &exchange, &key, true).await?;
                    }
                    Ok(())
                })
            }
        }
    }
}

/// Node mode: a session no longer follows these authors; drop its holds on their keys.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unwatch {
    pub authors: Vec<Uuid>,
    pub generation: u64,
}

impl Handler<Unwatch> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: Unwatch, _: &mut Context<Self>) {
        if msg.generation != self.generation {
            return;
        }
        if let Routing::Node(bindings) = &mut self.routing {
            for key in Self::author_keys(&msg.authors) {
                bindings.release(&key);
            }
        }
    }
}

/// A session's actor is running: in session mode, start consuming its queue for it. (In node
/// mode the registry already routes to it.)
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub session_id: Uuid,
    pub session: SessionHandle,
}

impl Handler<Attach> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) {
        let channel = self.topology_channel();
        if let Routing::Session(queues) = &mut self.routing {
            match channel {
                Ok(channel) => queues.attach(
                    channel,
                    self.settings.exchange.clone(),
                    self.stats.clone(),
                    msg.session_id,
                    msg.session,
                ),
                Err(_) => msg.session.disconnect.do_send(super::messages::Disconnect(
                    super::messages::DisconnectReason::BrokerLost,
                )),
            }
        }
    }
}

/// A session has ended: release what it held (its user's key and its celebrities' keys in node
/// mode, its queue in session mode).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub authors: Vec<Uuid>,
    pub generation: u64,
}

impl Handler<Unsubscribe> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        if msg.generation != self.generation {
            return; // its holds went with an old connection
        }
        let channel = self.topology_channel().ok();
        match &mut self.routing {
            Routing::Node(bindings) => {
                bindings.release(&user_routing_key(msg.user_id));
                for key in Self::author_keys(&msg.authors) {
                    bindings.release(&key);
                }
            }
            Routing::Session(queues) => queues.release(channel, msg.session_id),
        }
    }
}

/// The watchdog's sweep: releases whatever no live session needs, if it is older than
/// `older_than` (younger holds may belong to a session being admitted right now). In session
/// mode that is queues whose session is not in `live` or has stopped; in node mode, bound keys
/// not in `needed`. Returns how many were released.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Sweep {
    pub live: HashSet<Uuid>,
    pub needed: HashSet<String>,
    pub older_than: Instant,
}

impl Handler<Sweep> for BrokerActor {
    type Result = usize;

    fn handle(&mut self, msg: Sweep, _: &mut Context<Self>) -> usize {
        let channel = self.topology_channel().ok();
        match &mut self.routing {
            Routing::Node(bindings) => bindings.sweep(&msg.needed, msg.older_than),
            Routing::Session(queues) => queues.sweep(channel, &msg.live, msg.older_than),
        }
    }
}

/// The queues this node consumes (for tests and diagnostics): the node queue, or every session
/// queue.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct Queues;

impl Handler<Queues> for BrokerActor {
    type Result = MessageResult<Queues>;

    fn handle(&mut self, _: Queues, _: &mut Context<Self>) -> Self::Result {
        MessageResult(match &self.routing {
            Routing::Node(_) => self
                .link
                .as_ref()
                .and_then(|link| link.node_queue.clone())
                .into_iter()
                .collect(),
            Routing::Session(queues) => queues.queue_names(),
        })
    }
}

/// How many routing keys are bound to the node queue (node mode; 0 in session mode).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct BoundKeys;

impl Handler<BoundKeys> for BrokerActor {
    type Result = usize;

    fn handle(&mut self, _: BoundKeys, _: &mut Context<Self>) -> usize {
        match &self.routing {
            Routing::Node(bindings) => bindings.bound_keys(),
            Routing::Session(_) => 0,
        }
    }
}

/// A job for the fan-out (a post event, a follow change, a celebrity switch). Resolves once the
/// job is queued, not when it is delivered: writers never wait for the fan-out.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Publish(pub FanoutJob);

impl Handler<Publish> for BrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Self::Result {
        let jobs = self.fanout.clone();
        Box::pin(async move { jobs.send(msg.0).await.map_err(|_| BrokerError::Unavailable) })
    }
}

/// Closes the connection (which also drops every exclusive queue). For shutdown.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

impl Handler<Close> for BrokerActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Close, _: &mut Context<Self>) -> Self::Result {
        self.health.set(false);
        match &mut self.routing {
            Routing::Node(bindings) => bindings.link_down(),
            Routing::Session(queues) => queues.clear(),
        }
        self.publish_channel.send_replace(None);
        self.generation += 1; // the consumer's end is no longer news
        let link = self.link.take();
        Box::pin(
            async move {
                if let Some(link) = link {
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
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}
