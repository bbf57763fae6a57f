//! Session mode (`realtime.queue_mode = "session"`): one exclusive queue per WebSocket session,
//! bound to `user.<id>` (and `author.<id>` for each celebrity the user follows), consumed by a
//! forwarder task that hands each event to the session's actor. The broker's queue-per-session
//! bookkeeping lives here; the broker calls into it through `queue_routing`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::Channel;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::error::BrokerError;
use super::topology::{
    self, author_routing_key, session_queue_arguments, session_queue_name, user_routing_key, Route,
};
use crate::config::RealtimeSettings;
use crate::realtime::control::{is_control, seq_of, Control};
use crate::realtime::session::protocol::{
    Deliver, Disconnect, DisconnectReason, FeedSync, SessionHandle,
};
use crate::realtime::stats::Stats;
use crate::realtime::trace::Trace;

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

/// Every session queue of this node.
#[derive(Default)]
pub struct SessionQueues {
    subscriptions: HashMap<Uuid, Subscription>,
}

impl SessionQueues {
    pub fn queue_names(&self) -> Vec<String> {
        self.subscriptions
            .values()
            .map(|s| s.queue.clone())
            .collect()
    }

    /// Forgets every queue (their connection is gone, and they with it).
    pub fn clear(&mut self) {
        self.subscriptions.clear();
    }

    pub fn queue_of(&self, session_id: Uuid) -> Option<String> {
        self.subscriptions.get(&session_id).map(|s| s.queue.clone())
    }

    /// Records a queue that `declare` made, before its session attaches.
    pub fn prepared(&mut self, session_id: Uuid, queue: String) {
        self.subscriptions.insert(
            session_id,
            Subscription {
                queue,
                since: Instant::now(),
                state: State::Prepared,
            },
        );
    }

    /// Starts forwarding a prepared queue to its now-running session. A session that was never
    /// prepared (its queue is gone) is told to reconnect.
    pub fn attach(
        &mut self,
        channel: Channel,
        exchange: String,
        stats: Stats,
        session_id: Uuid,
        session: SessionHandle,
    ) {
        let Some(subscription) = self.subscriptions.get_mut(&session_id) else {
            session
                .disconnect
                .do_send(Disconnect(DisconnectReason::BrokerLost));
            return;
        };
        let (stop, stopped) = oneshot::channel();
        actix_rt::spawn(forward(
            channel,
            exchange,
            subscription.queue.clone(),
            session.clone(),
            stats,
            stopped,
        ));
        subscription.since = Instant::now();
        subscription.state = State::Active { session, stop };
    }

    /// Ends a session's subscription: stops its forwarder (which deletes the queue), or deletes
    /// a queue that was never consumed.
    pub fn release(&mut self, channel: Option<Channel>, session_id: Uuid) {
        let Some(subscription) = self.subscriptions.remove(&session_id) else {
            return;
        };
        match subscription.state {
            State::Active { stop, .. } => {
                let _ = stop.send(());
            }
            State::Prepared => {
                if let Some(channel) = channel {
                    actix_rt::spawn(
                        async move { delete_queue(&channel, &subscription.queue).await },
                    );
                }
            }
        }
    }

    /// Releases every subscription older than `older_than` whose session is not in `live` or
    /// whose actor has stopped; returns how many.
    pub fn sweep(
        &mut self,
        channel: Option<Channel>,
        live: &HashSet<Uuid>,
        older_than: Instant,
    ) -> usize {
        let orphans: Vec<Uuid> = self
            .subscriptions
            .iter()
            .filter(|(id, sub)| {
                let dead = match &sub.state {
                    State::Active { session, .. } => !session.is_alive(),
                    State::Prepared => false,
                };
                sub.since < older_than && (dead || !live.contains(id))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &orphans {
            log::info!("watchdog: releasing the orphaned queue of session {id}");
            self.release(channel.clone(), *id);
        }
        orphans.len()
    }
}

/// Declares a session queue (exclusive, auto-delete, expiring, length-capped) and binds it to
/// the user's routing key.
pub async fn declare(
    channel: Channel,
    settings: &RealtimeSettings,
    session_id: Uuid,
    user_id: Uuid,
) -> Result<String, BrokerError> {
    let queue = session_queue_name(&settings.exchange, session_id);
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            session_queue_arguments(settings),
        )
        .await?;
    topology::bind(
        &channel,
        &queue,
        &settings.exchange,
        &user_routing_key(user_id),
    )
    .await?;
    Ok(queue)
}

async fn delete_queue(channel: &Channel, queue: &str) {
    if let Err(error) = channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
    {
        log::warn!("deleting queue {queue}: {error}");
    }
}

/// One session's forwarder: consumes its queue and hands each event to the session's actor,
/// acking only once the actor has taken it; applies control messages to the queue's own
/// bindings. Ends when told to, when the actor is gone or when the consumer is cancelled; then
/// it deletes the queue.
async fn forward(
    channel: Channel,
    exchange: String,
    queue: String,
    session: SessionHandle,
    stats: Stats,
    mut stop: oneshot::Receiver<()>,
) {
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
            if channel.status().connected() {
                session
                    .disconnect
                    .do_send(Disconnect(DisconnectReason::BrokerLost));
                delete_queue(&channel, &queue).await;
            }
            return;
        }
    };
    // Celebrities unfollowed: their events may still be in the queue, routed before the unbind.
    let mut unwatched: HashSet<Uuid> = HashSet::new();
    // Why the loop ended decides what the session is told: nothing if it was stopped (it is
    // going away), a "reconnect" close if its queue or consumer failed under it.
    let stopped = loop {
        let delivery = tokio::select! {
            _ = &mut stop => break true,
            next = consumer.next() => match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => {
                    log::warn!("consumer of {queue}: {error}");
                    break false;
                }
                None => break false, // cancelled by the broker: the queue is gone
            },
        };
        stats.add_consumed(1);
        let seq = seq_of(&delivery.properties);
        if is_control(&delivery.properties) {
            let applied = match Control::parse(&delivery.data) {
                Some(Control::Watch(author)) => {
                    unwatched.remove(&author);
                    // The author's events after `seq` went to a key this queue did not have:
                    // hold what arrives, bind, then fill from `seq`.
                    session.sync.do_send(FeedSync::Hold);
                    let key = author_routing_key(author);
                    let bound = topology::bind(&channel, &queue, &exchange, &key).await;
                    session.sync.do_send(FeedSync::CatchUp { after: Some(seq) });
                    bound
                }
                Some(Control::Unwatch(author)) => {
                    unwatched.insert(author);
                    let key = author_routing_key(author);
                    topology::unbind(&channel, &queue, &exchange, &key).await
                }
                None => {
                    log::warn!("{queue}: dropping a control message that does not parse");
                    Ok(())
                }
            };
            if let Err(error) = applied {
                log::warn!("applying a follow change to {queue}: {error}");
                break false;
            }
        } else if matches!(
            Route::parse(delivery.routing_key.as_str()),
            Some(Route::Author(author)) if unwatched.contains(&author)
        ) {
            // Routed before the unfollow was applied: not for this session any more.
        } else {
            let text: Arc<str> = String::from_utf8_lossy(&delivery.data).into();
            let trace = Trace::consumed(delivery.properties.headers().as_ref(), &stats);
            trace.handing(&stats);
            session.owe();
            // Counted as handed, before the session writes it (as in node mode).
            stats.add_delivered(1);
            // A session that stops reading must not wedge its forwarder: `stop` still wins.
            let handed = tokio::select! {
                _ = &mut stop => break true,
                handed = session.deliver.send(Deliver((seq, text), trace)) => handed,
            };
            if handed.is_err() {
                break true; // the session actor is gone; the queue goes with it
            }
        }
        if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
            log::warn!("acking on {queue}: {error}");
        }
    };
    // A consumer that ends with its link is the registry's to relink; one whose queue went
    // while the link stayed cannot be mended here: its client reconnects (with `since`).
    if !stopped && channel.status().connected() {
        log::warn!("{queue} is gone while the broker link is up; closing its session");
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
