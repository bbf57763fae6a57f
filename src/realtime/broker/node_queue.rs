//! Node mode (`realtime.queue_mode = "node"`, the default): one exclusive queue per herald
//! instance. This module owns its bindings and its consumer:
//!
//! - [`NodeBindings`] counts, per routing key (`user.<id>`, `author.<id>`), how many local
//!   sessions need it: the first hold binds the key to the node queue, the last release unbinds
//!   it. A binder task applies bind and unbind in the order they were asked for, many per round
//!   trip, so a connect storm is not one round trip per session.
//! - With author shards (`realtime.author_shards` > 0, see `shards`), every shard key is bound
//!   once per link instead, and held for the link's life: watching an author costs no binding.
//! - [`consume`] reads the node queue and hands every delivery to the `SessionRegistry`, which
//!   knows which local sessions its routing key addresses.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{BoxFuture, Shared};
use futures_util::{FutureExt, StreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::error::BrokerError;
use super::pipeline;
use super::shards;
use super::topology::{self, Route};
use crate::realtime::control::{is_control, seq_of, Control};
use crate::realtime::routing::{ApplyControl, RegistryPort, RouteEvent};
use crate::realtime::stats::Stats;
use crate::realtime::trace::Trace;

/// Bind/unbind requests sent in one round trip at most.
const BINDING_BATCH: usize = 512;

/// Acks are sent for many deliveries at once (`multiple`), at least this often.
const ACK_BATCH: u64 = 256;

/// Deliveries handed to the registry and not yet handled by it. The consumer waits beyond this,
/// so a burst stays in RabbitMQ (bounded by `node_queue_max_length`) instead of in herald's
/// memory.
const REGISTRY_BACKLOG: usize = 4096;

type Ready = Shared<BoxFuture<'static, Result<(), BrokerError>>>;

struct Binding {
    holders: usize,
    ready: Ready,
    since: Instant,
}

enum BindingOp {
    Bind(String, oneshot::Sender<Result<(), BrokerError>>),
    Unbind(String),
}

/// The routing keys bound to this node's queue, and who holds them.
#[derive(Default)]
pub struct NodeBindings {
    keys: HashMap<String, Binding>,
    binder: Option<mpsc::UnboundedSender<BindingOp>>,
    /// How many author shard keys every link binds (0: a key per author watched instead).
    author_shards: u16,
    /// How many user shard keys local users are bound under (0: a key per user).
    user_shards: u16,
    /// This link's shard keys, once all are bound (`None` without shards or without a link).
    shards_ready: Option<Ready>,
}

impl NodeBindings {
    pub fn new(author_shards: u16, user_shards: u16) -> Self {
        NodeBindings {
            author_shards,
            user_shards,
            ..NodeBindings::default()
        }
    }

    /// The key this node holds for a local session of `user` (see `shards::node_user_key`).
    pub fn user_key(&self, user: uuid::Uuid) -> String {
        shards::node_user_key(user, self.user_shards)
    }

    /// A new link: its queue starts with no bindings, and a new binder applies them, starting
    /// with the author shards (if any), bound for the link's life.
    pub fn link_up(&mut self, channel: Channel, exchange: String, queue: String) {
        let (ops, rx) = mpsc::unbounded_channel();
        actix_rt::spawn(run_binder(channel, exchange, queue, rx));
        self.keys.clear();
        self.binder = Some(ops);
        self.shards_ready = (self.author_shards > 0).then(|| {
            let all: Vec<Ready> = shards::all_keys(self.author_shards)
                .into_iter()
                .map(|key| self.request_bind(key))
                .collect();
            futures_util::future::join_all(all)
                .map(|bound| bound.into_iter().collect())
                .boxed()
                .shared()
        });
    }

    /// The link is gone, and the node queue with every binding on it.
    pub fn link_down(&mut self) {
        self.keys.clear();
        self.binder = None;
        self.shards_ready = None;
    }

    /// With author shards: resolves once this link's shard keys are bound, after which every
    /// author's events reach this node (`None` without shards: authors are bound one by one).
    pub fn authors_ready(&self) -> Option<Ready> {
        if self.author_shards == 0 {
            return None;
        }
        Some(self.shards_ready.clone().unwrap_or_else(|| {
            futures_util::future::ready(Err(BrokerError::Unavailable))
                .boxed()
                .shared()
        }))
    }

    /// Takes one hold on `key`, binding it if it is the first; resolves once it is bound.
    pub fn retain(&mut self, key: String) -> Ready {
        if let Some(binding) = self.keys.get_mut(&key) {
            // A bind that failed leaves its error here; the next holder asks again.
            if !matches!(binding.ready.peek(), Some(Err(_))) {
                binding.holders += 1;
                return binding.ready.clone();
            }
        }
        let ready = self.request_bind(key.clone());
        let holders = self.keys.get(&key).map_or(0, |b| b.holders) + 1;
        self.keys.insert(
            key,
            Binding {
                holders,
                ready: ready.clone(),
                since: Instant::now(),
            },
        );
        ready
    }

    fn request_bind(&self, key: String) -> Ready {
        let (done, outcome) = oneshot::channel();
        let sent = self
            .binder
            .as_ref()
            .is_some_and(|binder| binder.send(BindingOp::Bind(key, done)).is_ok());
        if !sent {
            return futures_util::future::ready(Err(BrokerError::Unavailable))
                .boxed()
                .shared();
        }
        outcome
            .map(|result| result.unwrap_or(Err(BrokerError::Unavailable)))
            .boxed()
            .shared()
    }

    /// Drops one hold on `key`, unbinding it with the last.
    pub fn release(&mut self, key: &str) {
        let Some(binding) = self.keys.get_mut(key) else {
            return;
        };
        binding.holders = binding.holders.saturating_sub(1);
        if binding.holders == 0 {
            self.keys.remove(key);
            self.unbind(key.to_owned());
        }
    }

    fn unbind(&self, key: String) {
        if let Some(binder) = &self.binder {
            let _ = binder.send(BindingOp::Unbind(key));
        }
    }

    /// The watchdog's safety net: unbinds every key older than `older_than` that no local
    /// session needs. Returns how many.
    pub fn sweep(&mut self, needed: &HashSet<String>, older_than: Instant) -> usize {
        // The registry names users' own keys; with user shards, their shards are what is held.
        let shards_needed: HashSet<String> = match self.user_shards {
            0 => HashSet::new(),
            n => needed
                .iter()
                .filter_map(|key| match Route::parse(key) {
                    Some(Route::User(user)) => Some(shards::node_user_key(user, n)),
                    _ => None,
                })
                .collect(),
        };
        let needed = |key: &String| needed.contains(key) || shards_needed.contains(key);
        let stale: Vec<String> = self
            .keys
            .iter()
            .filter(|(key, binding)| binding.since < older_than && !needed(key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &stale {
            log::info!("watchdog: unbinding {key}, which no local session needs");
            self.keys.remove(key);
            self.unbind(key.clone());
        }
        stale.len()
    }

    /// Keys bound to the node queue for its sessions (the author shards, bound for the link's
    /// life whatever the sessions, are not counted).
    pub fn bound_keys(&self) -> usize {
        self.keys.len()
    }
}

/// Applies binding changes in order. Each round takes every request waiting (up to a batch),
/// starts them all in order (see [`pipeline`]) and then awaits the replies together.
async fn run_binder(
    channel: Channel,
    exchange: String,
    queue: String,
    mut ops: mpsc::UnboundedReceiver<BindingOp>,
) {
    while let Some(first) = ops.recv().await {
        let mut batch = vec![first];
        while batch.len() < BINDING_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut sent = Vec::with_capacity(batch.len());
        for op in batch {
            let key = match &op {
                BindingOp::Bind(key, _) | BindingOp::Unbind(key) => key.clone(),
            };
            let call = match op {
                BindingOp::Bind(..) => topology::bind(&channel, &queue, &exchange, &key),
                BindingOp::Unbind(_) => topology::unbind(&channel, &queue, &exchange, &key),
            };
            let call = pipeline::start(call).await;
            let done = match op {
                BindingOp::Bind(_, done) => Some(done),
                BindingOp::Unbind(_) => None,
            };
            sent.push((key, call, done));
        }
        for (key, call, done) in sent {
            let result = pipeline::finish(call)
                .await
                .map_or(Err(BrokerError::Unavailable), |r| {
                    r.map_err(BrokerError::from)
                });
            match &result {
                // The link is going (a shutdown, a lost connection): every binding goes with
                // its queue, so one line per key would only bury the line that says why.
                Err(error) if !channel.status().connected() => {
                    log::debug!("binding {key} to {queue}: {error}")
                }
                Err(error) => log::warn!("binding {key} to {queue}: {error}"),
                Ok(()) => {}
            }
            if let Some(done) = done {
                let _ = done.send(result);
            }
        }
    }
}

/// Consumes the node queue: every event goes to the registry to be handed to the sessions its
/// routing key addresses, every control message to the registry to change what they watch.
/// Deliveries are acked once handed over, in batches. Returns why it ended, which the broker
/// treats as the link lost: without this consumer no session on the node hears anything.
pub async fn consume(
    channel: Channel,
    queue: String,
    registry: RegistryPort,
    stats: Stats,
) -> String {
    let mut consumer = match channel
        .basic_consume(
            queue.as_str().into(),
            "herald-node".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    {
        Ok(consumer) => consumer,
        Err(error) => return format!("consuming the node queue: {error}"),
    };
    let backlog = Arc::new(Semaphore::new(REGISTRY_BACKLOG));
    let mut unacked: Option<lapin::Acker> = None;
    let mut unacked_count = 0u64;
    let why = loop {
        // Ack what was handed over whenever the queue has nothing more ready right now.
        let next = match consumer.next().now_or_never() {
            Some(next) => next,
            None => {
                if let Some(acker) = unacked.take() {
                    ack_through(&acker).await;
                    unacked_count = 0;
                }
                consumer.next().await
            }
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => break format!("the node queue's consumer failed: {error}"),
            None => break "the node queue's consumer was cancelled".to_owned(),
        };
        stats.add_consumed(1);
        let Ok(handed) = Arc::clone(&backlog).acquire_owned().await else {
            break "the registry backlog closed".to_owned();
        };
        let seq = seq_of(&delivery.properties);
        let headers = delivery.properties.headers().as_ref();
        match shards::route_of(delivery.routing_key.as_str(), headers) {
            Some(Route::User(user_id)) if is_control(&delivery.properties) => {
                match Control::parse(&delivery.data) {
                    Some(control) => registry.apply_control.do_send(ApplyControl {
                        user_id,
                        control,
                        seq,
                    }),
                    None => log::warn!("dropping a control message that does not parse"),
                }
            }
            Some(route) => {
                let payload: Arc<str> = String::from_utf8_lossy(&delivery.data).into();
                let trace = Trace::consumed(delivery.properties.headers().as_ref(), &stats);
                registry.route_event.do_send(RouteEvent {
                    route,
                    frame: (seq, payload),
                    trace,
                    handed,
                });
            }
            None => log::warn!(
                "dropping a delivery with an unknown routing key {:?}",
                delivery.routing_key.as_str()
            ),
        }
        unacked = Some(delivery.acker);
        unacked_count += 1;
        if unacked_count >= ACK_BATCH {
            if let Some(acker) = unacked.take() {
                ack_through(&acker).await;
            }
            unacked_count = 0;
        }
    };
    why
}

async fn ack_through(acker: &lapin::Acker) {
    let multiple = BasicAckOptions { multiple: true };
    if let Err(error) = acker.ack(multiple).await {
        log::warn!("acking node queue deliveries: {error}");
    }
}
