//! `BrokerActor`: owns herald's broker link (see `link`), keeps the routing that brings each
//! local session its events (see `queue_routing`), and hands the fan-out the link's publishing
//! channel. It speaks to the registry only through a [`RegistryPort`], and the registry to it
//! through the messages of `routing`.
//!
//! If the link is lost its exclusive queues die with it, but no session is closed: the registry
//! has every session hold its events, the actor reconnects (each of `amqp.urls` in turn, backoff
//! capped at a few seconds), and on the new link `relink` routes the sessions again and each
//! fills its gap from the feed log.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures_util::StreamExt;
use lapin::Channel;
use tokio::sync::watch;
use uuid::Uuid;

use super::error::BrokerError;
use super::link::{self, BrokerHealth, Endpoints, Link};
use super::node_queue;
use super::queue_routing::{QueuePrepared, QueueRouting, ReleaseKeys, Reports};
use crate::config::RealtimeSettings;
use crate::realtime::routing::{
    AttachSession, LinkLost, RegistryPort, ReleaseSession, RouteAuthors, RouteUser, UnrouteAuthors,
};
use crate::realtime::stats::Stats;
use crate::retry;

pub struct BrokerActor {
    settings: RealtimeSettings,
    endpoints: Arc<Endpoints>,
    link: Option<Link>,
    registry: RegistryPort,
    routing: QueueRouting,
    health: BrokerHealth,
    stats: Stats,
    /// The fan-out's view of the current publishing channel (`None` while disconnected).
    publish_channel: watch::Sender<Option<Channel>>,
    /// Bumped on every new link: what names an older one (a release, a consumer's end, a
    /// connection event) is about queues and bindings that are gone already.
    generation: u64,
}

impl BrokerActor {
    /// A broker for a link already open (from [`link::open_link`]). Start it in a context made
    /// beforehand when the registry needs its address first; it takes the link on start.
    pub fn new(
        settings: RealtimeSettings,
        endpoints: Arc<Endpoints>,
        registry: RegistryPort,
        health: BrokerHealth,
        stats: Stats,
        publish_channel: watch::Sender<Option<Channel>>,
    ) -> Self {
        BrokerActor {
            routing: QueueRouting::new(&settings),
            settings,
            endpoints,
            link: None,
            registry,
            health,
            stats,
            publish_channel,
            generation: 0,
        }
    }

    /// Whether `generation` names the current link.
    fn is_current(&self, generation: u64) -> bool {
        generation == self.generation && self.link.is_some()
    }

    fn topology_channel(&self) -> Result<Channel, BrokerError> {
        match &self.link {
            Some(link) if link.is_connected() => Ok(link.topology.clone()),
            _ => Err(BrokerError::Unavailable),
        }
    }

    fn reports(ctx: &Context<Self>) -> Reports {
        Reports {
            prepared: ctx.address().recipient(),
            release: ctx.address().recipient(),
        }
    }

    fn link_lost(&mut self, ctx: &mut Context<Self>, why: &str) {
        let Some(old) = self.link.take() else {
            return;
        };
        // The connection may still be open (a channel error also ends the link).
        link::abandon(old);
        log::error!(
            "lost the RabbitMQ connection ({why}); sessions stay open, holding their events, \
             while herald reconnects"
        );
        self.health.set(false);
        self.publish_channel.send_replace(None);
        self.routing.link_down();
        self.registry.link_lost.do_send(LinkLost);
        let endpoints = Arc::clone(&self.endpoints);
        let settings = self.settings.clone();
        ctx.spawn(
            async move {
                let what = endpoints.describe();
                retry::with_backoff(&what, || link::open_link(&endpoints, &settings)).await
            }
            .into_actor(self)
            .map(|link, _, ctx| ctx.notify(LinkUp(link))),
        );
    }
}

impl Actor for BrokerActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.health.set(false);
    }
}

/// A (re)opened link takes over.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkUp(pub Link);

impl Handler<LinkUp> for BrokerActor {
    type Result = ();

    fn handle(&mut self, LinkUp(link): LinkUp, ctx: &mut Context<Self>) {
        if self.generation > 0 {
            self.stats.count_reconnect();
        }
        self.generation += 1;
        let generation = self.generation;
        ctx.add_stream(
            link.connection
                .events_listener()
                .map(move |event| LinkEvent(generation, event)),
        );
        self.routing.link_up(&link, &self.settings.exchange);
        if let Some(queue) = &link.node_queue {
            let consumer = node_queue::consume(
                link.topology.clone(),
                queue.clone(),
                self.registry.clone(),
                self.stats.clone(),
            );
            let broker = ctx.address();
            actix_rt::spawn(async move {
                let why = consumer.await;
                broker.do_send(ConsumerEnded { generation, why });
            });
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
        if !self.is_current(generation) {
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
struct ConsumerEnded {
    generation: u64,
    why: String,
}

impl Handler<ConsumerEnded> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: ConsumerEnded, ctx: &mut Context<Self>) {
        if self.is_current(msg.generation) {
            self.link_lost(ctx, &msg.why);
        }
    }
}

// Waiting is done in plain futures (`ResponseFuture`), not actor futures: an actor polls every
// pending actor future each time it wakes, so thousands of admissions in flight would make each
// message cost thousands of polls. What must touch the actor's state afterwards comes back as a
// message (`QueuePrepared`, `ReleaseKeys`).
impl Handler<RouteUser> for BrokerActor {
    type Result = ResponseFuture<Result<u64, BrokerError>>;

    fn handle(&mut self, msg: RouteUser, ctx: &mut Context<Self>) -> Self::Result {
        let channel = match self.topology_channel() {
            Ok(channel) => channel,
            Err(error) => return Box::pin(async { Err(error) }),
        };
        self.routing.route_user(
            channel,
            &self.settings,
            (msg.session_id, msg.user_id),
            self.generation,
            Self::reports(ctx),
        )
    }
}

impl Handler<QueuePrepared> for BrokerActor {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, msg: QueuePrepared, _: &mut Context<Self>) -> Self::Result {
        if !self.is_current(msg.generation) {
            return Err(BrokerError::Unavailable);
        }
        self.routing.queue_prepared(msg.session_id, msg.queue);
        Ok(())
    }
}

impl Handler<ReleaseKeys> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: ReleaseKeys, _: &mut Context<Self>) {
        if self.is_current(msg.generation) {
            self.routing.release_keys(&msg.keys);
        }
    }
}

impl Handler<RouteAuthors> for BrokerActor {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: RouteAuthors, _: &mut Context<Self>) -> Self::Result {
        if !self.is_current(msg.generation) {
            return Box::pin(async { Err(BrokerError::Unavailable) });
        }
        let channel = self.topology_channel();
        self.routing.route_authors(
            channel,
            &self.settings.exchange,
            msg.session_id,
            &msg.authors,
        )
    }
}

impl Handler<UnrouteAuthors> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: UnrouteAuthors, _: &mut Context<Self>) {
        if self.is_current(msg.generation) {
            self.routing.unroute_authors(&msg.authors);
        }
    }
}

impl Handler<AttachSession> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: AttachSession, _: &mut Context<Self>) {
        let channel = self.topology_channel();
        self.routing.attach(
            channel,
            &self.settings.exchange,
            &self.stats,
            msg.session_id,
            msg.session,
        );
    }
}

impl Handler<ReleaseSession> for BrokerActor {
    type Result = ();

    fn handle(&mut self, msg: ReleaseSession, _: &mut Context<Self>) {
        if self.is_current(msg.generation) {
            let channel = self.topology_channel().ok();
            self.routing.release_session(channel, &msg);
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
        self.routing
            .sweep(channel, &msg.live, &msg.needed, msg.older_than)
    }
}

/// The watchdog's check that every channel of the link is still open: a channel the broker
/// closed (a channel-level error) while the connection stays up is reported by no connection
/// event, and in session mode no consumer's end reports it either, so it is looked for.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CheckLink;

impl Handler<CheckLink> for BrokerActor {
    type Result = ();

    fn handle(&mut self, _: CheckLink, ctx: &mut Context<Self>) {
        if self.link.as_ref().is_some_and(|link| !link.is_connected()) {
            self.link_lost(ctx, "a channel of the link was closed");
        }
    }
}

/// Closes the link (which also drops every exclusive queue), then stops. For shutdown.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

impl Handler<Close> for BrokerActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Close, _: &mut Context<Self>) -> Self::Result {
        self.health.set(false);
        self.routing.link_down();
        self.publish_channel.send_replace(None);
        self.generation += 1; // the consumer's end is no longer news
        let old = self.link.take();
        Box::pin(
            async move {
                if let Some(old) = old {
                    link::close(old).await;
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}

/// What `probes` reads.
impl BrokerActor {
    pub(in crate::realtime) fn queues(&self) -> Vec<String> {
        self.routing.queues(self.link.as_ref())
    }

    pub(in crate::realtime) fn bound_keys(&self) -> usize {
        self.routing.bound_keys()
    }
}
