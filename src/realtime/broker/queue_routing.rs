//! `QueueRouting`: how this node's sessions get their events, in one place for both queue modes
//! (`realtime.queue_mode`). Every place the two modes differ is a method here, with its one
//! `match`; the `BrokerActor` owns a `QueueRouting` and decides nothing by mode itself.
//!
//! - Node mode ([`NodeBindings`]): one queue per node; routing a session's user means holding
//!   its key on that queue; its celebrities, holding theirs, or with author shards (the
//!   default, see `shards`) nothing: every shard is bound for the link's life.
//! - Session mode ([`SessionQueues`]): a queue per session, bound to its keys and consumed by a
//!   forwarder once the session runs.

use std::collections::HashSet;
use std::time::Instant;

use actix::prelude::*;
use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use lapin::Channel;
use uuid::Uuid;

use super::error::BrokerError;
use super::link::Link;
use super::node_queue::NodeBindings;
use super::session_queues::{self, SessionQueues};
use super::topology::{self, author_routing_key};
use crate::config::{QueueMode, RealtimeSettings};
use crate::realtime::routing::ReleaseSession;
use crate::realtime::session::protocol::{Disconnect, DisconnectReason, SessionHandle};
use crate::realtime::stats::Stats;

/// Session mode: a session's queue is declared and bound; the broker records it (unless the link
/// it was declared on is gone, and the queue with it).
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct QueuePrepared {
    pub session_id: Uuid,
    pub queue: String,
    pub generation: u64,
}

/// Node mode: drops the holds of a routing that failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseKeys {
    pub keys: Vec<String>,
    pub generation: u64,
}

/// Where the futures a routing starts report back to (the broker, which owns the state).
#[derive(Clone)]
pub struct Reports {
    pub prepared: Recipient<QueuePrepared>,
    pub release: Recipient<ReleaseKeys>,
}

pub enum QueueRouting {
    Node(NodeBindings),
    Session(SessionQueues),
}

impl QueueRouting {
    pub fn new(settings: &RealtimeSettings) -> Self {
        match settings.queue_mode {
            QueueMode::Node => QueueRouting::Node(NodeBindings::new(
                settings.author_shards,
                settings.user_shards,
            )),
            QueueMode::Session => QueueRouting::Session(SessionQueues::default()),
        }
    }

    /// A new link is up (node mode: its queue starts with no bindings).
    pub fn link_up(&mut self, link: &Link, exchange: &str) {
        if let (QueueRouting::Node(bindings), Some(queue)) = (self, &link.node_queue) {
            bindings.link_up(link.topology.clone(), exchange.to_owned(), queue.clone());
        }
    }

    /// The link is gone, and every queue and binding with it.
    pub fn link_down(&mut self) {
        match self {
            QueueRouting::Node(bindings) => bindings.link_down(),
            QueueRouting::Session(queues) => queues.clear(),
        }
    }

    /// Routes `user_id`'s events to a session about to start; resolves with `generation` once
    /// in place.
    pub fn route_user(
        &mut self,
        channel: Channel,
        settings: &RealtimeSettings,
        (session_id, user_id): (Uuid, Uuid),
        generation: u64,
        reports: Reports,
    ) -> BoxFuture<'static, Result<u64, BrokerError>> {
        match self {
            QueueRouting::Node(bindings) => {
                let key = bindings.user_key(user_id);
                let ready = bindings.retain(key.clone());
                async move {
                    ready.await.inspect_err(|_| {
                        let keys = vec![key];
                        reports.release.do_send(ReleaseKeys { keys, generation });
                    })?;
                    Ok(generation)
                }
                .boxed()
            }
            QueueRouting::Session(_) => {
                let settings = settings.clone();
                async move {
                    let queue =
                        session_queues::declare(channel, &settings, session_id, user_id).await?;
                    let prepared = QueuePrepared {
                        session_id,
                        queue,
                        generation,
                    };
                    reports
                        .prepared
                        .send(prepared)
                        .await
                        .unwrap_or(Err(BrokerError::Unavailable))?;
                    Ok(generation)
                }
                .boxed()
            }
        }
    }

    /// Routes these celebrities' events to a session too. Node-mode holds are counted even when
    /// the bind cannot happen (the link is going down), so the session's release balances them.
    pub fn route_authors(
        &mut self,
        channel: Result<Channel, BrokerError>,
        exchange: &str,
        session_id: Uuid,
        authors: &[Uuid],
    ) -> BoxFuture<'static, Result<(), BrokerError>> {
        let keys = authors.iter().map(|author| author_routing_key(*author));
        match self {
            QueueRouting::Node(bindings) => {
                if let Some(shards) = bindings.authors_ready() {
                    return shards.boxed();
                }
                let ready: Vec<_> = keys.map(|key| bindings.retain(key)).collect();
                async move { join_all(ready).await.into_iter().collect() }.boxed()
            }
            QueueRouting::Session(queues) => {
                let (Ok(channel), Some(queue)) = (channel, queues.queue_of(session_id)) else {
                    return async { Err(BrokerError::Unavailable) }.boxed();
                };
                let exchange = exchange.to_owned();
                let keys: Vec<String> = keys.collect();
                async move {
                    for key in keys {
                        topology::bind(&channel, &queue, &exchange, &key).await?;
                    }
                    Ok(())
                }
                .boxed()
            }
        }
    }

    /// Node mode: drops a session's holds on these celebrities' keys. (A session queue applies
    /// unfollows itself, in order with its events.)
    pub fn unroute_authors(&mut self, authors: &[Uuid]) {
        if let QueueRouting::Node(bindings) = self {
            if bindings.authors_ready().is_some() {
                return; // the shards stay bound
            }
            for author in authors {
                bindings.release(&author_routing_key(*author));
            }
        }
    }

    /// Session mode: starts consuming a session's queue for it, or tells it to reconnect if
    /// there is no link. (In node mode the registry already routes to it.)
    pub fn attach(
        &mut self,
        channel: Result<Channel, BrokerError>,
        exchange: &str,
        stats: &Stats,
        session_id: Uuid,
        session: SessionHandle,
    ) {
        if let QueueRouting::Session(queues) = self {
            match channel {
                Ok(channel) => queues.attach(
                    channel,
                    exchange.to_owned(),
                    stats.clone(),
                    session_id,
                    session,
                ),
                Err(_) => session
                    .disconnect
                    .do_send(Disconnect(DisconnectReason::BrokerLost)),
            }
        }
    }

    /// Releases everything a session held.
    pub fn release_session(&mut self, channel: Option<Channel>, session: &ReleaseSession) {
        match self {
            QueueRouting::Node(bindings) => {
                bindings.release(&bindings.user_key(session.user_id));
                if bindings.authors_ready().is_some() {
                    return; // the shards stay bound
                }
                for author in &session.authors {
                    bindings.release(&author_routing_key(*author));
                }
            }
            QueueRouting::Session(queues) => queues.release(channel, session.session_id),
        }
    }

    pub fn queue_prepared(&mut self, session_id: Uuid, queue: String) {
        if let QueueRouting::Session(queues) = self {
            queues.prepared(session_id, queue);
        }
    }

    pub fn release_keys(&mut self, keys: &[String]) {
        if let QueueRouting::Node(bindings) = self {
            for key in keys {
                bindings.release(key);
            }
        }
    }

    /// The watchdog's sweep: releases what no live session needs, if older than `older_than`
    /// (session queues whose session is not in `live`; node bindings not in `needed`).
    pub fn sweep(
        &mut self,
        channel: Option<Channel>,
        live: &HashSet<Uuid>,
        needed: &HashSet<String>,
        older_than: Instant,
    ) -> usize {
        match self {
            QueueRouting::Node(bindings) => bindings.sweep(needed, older_than),
            QueueRouting::Session(queues) => queues.sweep(channel, live, older_than),
        }
    }

    /// The queues this node consumes: the node queue, or every session queue.
    pub fn queues(&self, link: Option<&Link>) -> Vec<String> {
        match self {
            QueueRouting::Node(_) => link
                .and_then(|link| link.node_queue.clone())
                .into_iter()
                .collect(),
            QueueRouting::Session(queues) => queues.queue_names(),
        }
    }

    /// Routing keys bound to the node queue (0 in session mode).
    pub fn bound_keys(&self) -> usize {
        match self {
            QueueRouting::Node(bindings) => bindings.bound_keys(),
            QueueRouting::Session(_) => 0,
        }
    }
}
