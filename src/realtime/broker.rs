//! `BrokerActor`: owns herald's AMQP connection (from a deadpool-lapin pool) and its channels,
//! declares the durable direct exchange, gives every session a queue bound to
//! `user.<user id>`, forwards each delivery to the session's actor address (acking once it is
//! handed over), deletes the queue when the session ends, and hands post events to the fan-out.
//!
//! If the connection is lost, every session is closed (1013, "try again"), since its exclusive
//! queue died with the connection, and the actor reconnects with backoff.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::fanout::{self, FanoutJob};
use super::messages::{Deliver, Disconnect, DisconnectReason, SessionHandle};
use super::registry::{DisconnectAll, SessionRegistry};
use super::topology::{session_queue, session_queue_arguments, user_routing_key};
use super::FeedEvent;
use crate::config::{AmqpSettings, RealtimeSettings};
use crate::retry;
use crate::store::DbPool;

/// Deliveries a session's consumer may hold unacked: enough to keep a socket busy, small enough
/// that a slow client leaves its backlog in its (length-capped) queue, not in herald's memory.
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
/// publishing with confirms (so a slow confirm never delays a session's acks).
pub struct Link {
    connection: deadpool_lapin::Object,
    topology: Channel,
    publish: Channel,
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

/// Connects, opens both channels and declares the exchange (durable, direct).
pub async fn open_link(pool: &deadpool_lapin::Pool, exchange: &str) -> Result<Link, BrokerError> {
    let connection = pool
        .get()
        .await
        .map_err(|e| BrokerError::Pool(e.to_string()))?;
    let topology = connection.create_channel().await?;
    topology
        .basic_qos(SESSION_PREFETCH, BasicQosOptions::default())
        .await?;
    topology
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let publish = connection.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(Link {
        connection,
        topology,
        publish,
    })
}

enum State {
    /// Queue declared and bound; events wait in it until the session attaches.
    Prepared,
    /// Consumed by a forwarding task; dropping or firing `stop` ends it and deletes the queue.
    Active {
        session: SessionHandle,
        stop: oneshot::Sender<()>,
    },
}

struct Subscription {
    queue: String,
    since: Instant,
    state: State,
}

pub struct BrokerActor {
    settings: RealtimeSettings,
    pool: deadpool_lapin::Pool,
    link: Option<Link>,
    registry: Addr<SessionRegistry>,
    subscriptions: HashMap<Uuid, Subscription>,
    health: BrokerHealth,
    publish_channel: watch::Sender<Option<Channel>>,
    fanout: mpsc::Sender<FanoutJob>,
    /// Bumped on every new link, so events from an old connection are ignored.
    generation: u64,
}

impl BrokerActor {
    /// Starts the broker and the session registry (they refer to each other) on the current
    /// arbiter, with a link already open.
    pub fn start_with_registry(
        settings: RealtimeSettings,
        pool: deadpool_lapin::Pool,
        link: Link,
        db: DbPool,
    ) -> (Addr<BrokerActor>, Addr<SessionRegistry>, BrokerHealth) {
        let health = BrokerHealth::default();
        let (publish_channel, publish_rx) = watch::channel(None);
        let fanout = fanout::spawn(db, &settings, publish_rx);
        // The two actors refer to each other: make the broker's context (and so its address)
        // first, start the registry with it, then run the broker in that context.
        let context = Context::new();
        let registry = SessionRegistry::new(context.address()).start();
        let broker = context.run(BrokerActor {
            settings,
            pool,
            link: None,
            registry: registry.clone(),
            subscriptions: HashMap::new(),
            health: health.clone(),
            publish_channel,
            fanout,
            generation: 0,
        });
        broker.do_send(LinkUp(link));
        (broker, registry, health)
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
        self.subscriptions.clear();
        self.registry
            .do_send(DisconnectAll(DisconnectReason::BrokerLost));
        let pool = self.pool.clone();
        let exchange = self.settings.exchange.clone();
        ctx.spawn(
            async move { retry::with_backoff("RabbitMQ", || open_link(&pool, &exchange)).await }
                .into_actor(self)
                .map(|link, _, ctx| ctx.notify(LinkUp(link))),
        );
    }

    /// Ends a session's subscription: stops its forwarder (which deletes the queue), or deletes
    /// a queue that was never consumed.
    fn release(&mut self, ctx: &mut Context<Self>, session_id: Uuid) {
        let Some(subscription) = self.subscriptions.remove(&session_id) else {
            return;
        };
        match subscription.state {
            State::Active { stop, .. } => {
                let _ = stop.send(());
            }
            State::Prepared => {
                if let Ok(channel) = self.topology_channel() {
                    ctx.spawn(
                        async move { delete_queue(&channel, &subscription.queue).await }
                            .into_actor(self),
                    );
                }
            }
        }
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
        ctx.add_stream(
            msg.0
                .connection
                .events_listener()
                .map(move |event| LinkEvent(generation, event)),
        );
        self.publish_channel
            .send_replace(Some(msg.0.publish.clone()));
        self.link = Some(msg.0);
        self.health.set(true);
        log::info!("connected to RabbitMQ");
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

/// Declares and binds a session's queue before its WebSocket upgrade completes, so that no
/// event published after the client is connected can be missed.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Prepare {
    pub session_id: Uuid,
    pub user_id: Uuid,
}

impl Handler<Prepare> for BrokerActor {
    type Result = ResponseActFuture<Self, Result<(), BrokerError>>;

    fn handle(&mut self, msg: Prepare, _: &mut Context<Self>) -> Self::Result {
        let channel = match self.topology_channel() {
            Ok(channel) => channel,
            Err(error) => return Box::pin(fut::ready(Err(error))),
        };
        let queue = session_queue(&self.settings.exchange, msg.session_id);
        let declare = declare_session_queue(
            channel,
            queue.clone(),
            self.settings.exchange.clone(),
            session_queue_arguments(&self.settings),
            msg.user_id,
        );
        let generation = self.generation;
        Box::pin(declare.into_actor(self).map(move |result, act, _| {
            // A link lost meanwhile took the queue with it: the client must retry.
            if act.generation != generation || act.link.is_none() {
                return Err(BrokerError::Unavailable);
            }
            if result.is_ok() {
                act.subscriptions.insert(
                    msg.session_id,
                    Subscription {
                        queue,
                        since: Instant::now(),
                        state: State::Prepared,
                    },
                );
            }
            result
        }))
    }
}

/// A registered session wants its events: consume its queue (declaring it first if it was not
/// prepared) and forward every delivery to it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub session_id: Uuid,
    pub session: SessionHandle,
}

impl Handler<Attach> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: Attach, _: &mut Context<Self>) {
        let Ok(channel) = self.topology_channel() else {
            msg.session
                .disconnect
                .do_send(Disconnect(DisconnectReason::BrokerLost));
            return;
        };
        let queue = session_queue(&self.settings.exchange, msg.session_id);
        let prepared = matches!(
            self.subscriptions.get(&msg.session_id),
            Some(Subscription {
                state: State::Prepared,
                ..
            })
        );
        let declare = (!prepared).then(|| {
            declare_session_queue(
                channel.clone(),
                queue.clone(),
                self.settings.exchange.clone(),
                session_queue_arguments(&self.settings),
                msg.session.user_id,
            )
        });
        let (stop, stopped) = oneshot::channel();
        actix_rt::spawn(forward(
            channel,
            queue.clone(),
            declare,
            msg.session.clone(),
            stopped,
        ));
        self.subscriptions.insert(
            msg.session_id,
            Subscription {
                queue,
                since: Instant::now(),
                state: State::Active {
                    session: msg.session,
                    stop,
                },
            },
        );
    }
}

/// A session has ended: delete its queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub session_id: Uuid,
}

impl Handler<Detach> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Context<Self>) {
        self.release(ctx, msg.session_id);
    }
}

/// The watchdog's sweep: release every subscription older than `older_than` whose session is
/// not in `live` or whose actor has stopped. Returns how many were released.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Sweep {
    pub live: HashSet<Uuid>,
    pub older_than: Instant,
}

impl Handler<Sweep> for BrokerActor {
    type Result = usize;

    fn handle(&mut self, msg: Sweep, ctx: &mut Context<Self>) -> usize {
        let orphans: Vec<Uuid> = self
            .subscriptions
            .iter()
            .filter(|(id, sub)| {
                let dead = match &sub.state {
                    State::Active { session, .. } => !session.is_alive(),
                    State::Prepared => false,
                };
                sub.since < msg.older_than && (dead || !msg.live.contains(id))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &orphans {
            log::info!("watchdog: releasing the orphaned queue of session {id}");
            self.release(ctx, *id);
        }
        orphans.len()
    }
}

/// The queue names of current subscriptions (for tests and diagnostics).
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct Queues;

impl Handler<Queues> for BrokerActor {
    type Result = MessageResult<Queues>;

    fn handle(&mut self, _: Queues, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.subscriptions
                .values()
                .map(|s| s.queue.clone())
                .collect(),
        )
    }
}

/// A post event to fan out to its author's followers. Resolves once the job is queued, not when
/// it is delivered: writers never wait for the fan-out.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Publish(pub FeedEvent);

impl Handler<Publish> for BrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Self::Result {
        let jobs = self.fanout.clone();
        let job = FanoutJob {
            author_id: msg.0.author(),
            payload: msg.0.to_json().into_bytes().into(),
        };
        Box::pin(async move { jobs.send(job).await.map_err(|_| BrokerError::Unavailable) })
    }
}

/// Closes the connection (which also drops every exclusive session queue). For shutdown.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

impl Handler<Close> for BrokerActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Close, _: &mut Context<Self>) -> Self::Result {
        self.health.set(false);
        self.subscriptions.clear();
        self.publish_channel.send_replace(None);
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

/// Declares a session queue (exclusive, auto-delete, expiring, length-capped) and binds it to
/// the user's routing key.
async fn declare_session_queue(
    channel: Channel,
    queue: String,
    exchange: String,
    arguments: FieldTable,
    user_id: Uuid,
) -> Result<(), BrokerError> {
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            user_routing_key(user_id).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

async fn delete_queue(channel: &Channel, queue: &str) {
    if let Err(error) = channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
    {
        log::warn!("deleting queue {queue}: {error}");
    }
}

/// One session's forwarder: consumes its queue and hands each delivery to the session's actor,
/// acking only once the actor has taken it. Ends when told to, when the actor is gone or when
/// the consumer is cancelled; then it deletes the queue.
async fn forward(
    channel: Channel,
    queue: String,
    declare: Option<impl std::future::Future<Output = Result<(), BrokerError>>>,
    session: SessionHandle,
    mut stop: oneshot::Receiver<()>,
) {
    if let Some(declare) = declare {
        if let Err(error) = declare.await {
            log::warn!("declaring {queue}: {error}");
            session
                .disconnect
                .do_send(Disconnect(DisconnectReason::BrokerLost));
            return;
        }
    }
    let tag = queue.clone();
    let mut consumer = match channel
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    {
        Ok(consumer) => consumer,
        Err(error) => {
            log::warn!("consuming {queue}: {error}");
            session
                .disconnect
                .do_send(Disconnect(DisconnectReason::BrokerLost));
            delete_queue(&channel, &queue).await;
            return;
        }
    };
    // Why the loop ended decides what the session is told: nothing if it was stopped (it is
    // going away), a "reconnect" close if its queue or consumer failed under it.
    let stopped = loop {
        let delivery = tokio::select! {
            _ = &mut stop => break true,
            next = consumer.next() => match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => {
                    log::warn!("consumer of {queue} failed: {error}");
                    break false;
                }
                None => break false, // cancelled by the broker: the queue is gone
            },
        };
        let text: Arc<str> = String::from_utf8_lossy(&delivery.data).into();
        // A session that stops reading must not wedge its forwarder: `stop` still wins.
        let handed = tokio::select! {
            _ = &mut stop => break true,
            handed = session.deliver.send(Deliver(text)) => handed,
        };
        if handed.is_err() {
            break true; // the session actor is gone; the queue goes with it
        }
        if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
            log::warn!("acking on {queue}: {error}");
        }
    };
    if !stopped {
        session
            .disconnect
            .do_send(Disconnect(DisconnectReason::BrokerLost));
    }
    if channel.status().connected() {
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        delete_queue(&channel, &queue).await;
    }
}
