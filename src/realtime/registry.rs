//! `SessionRegistry`: the one place that knows who is connected to this node. It admits a
//! session before its WebSocket upgrade completes (asking the broker to route its user's events
//! here first), keeps sessions by id, by user and (node mode) by the celebrities they follow,
//! and in node mode hands every delivery of the node queue to exactly the sessions its routing
//! key addresses.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use super::broker::{Attach, BrokerActor, BrokerError, Subscribe, Unsubscribe, Unwatch, Watch};
use super::control::Control;
use super::messages::{Deliver, Disconnect, DisconnectReason, SessionHandle};
use super::stats::Stats;
use super::topology::{author_routing_key, user_routing_key, Route};
use super::write_watch::WriteWatch;
use crate::config::QueueMode;

/// Events kept for a session admitted but not yet running (its upgrade response is on its way);
/// handed over when it registers.
const ADMISSION_BACKLOG: usize = 256;

struct Entry {
    user_id: Uuid,
    /// The broker link the session's holds belong to (0 until subscribed).
    generation: u64,
    admitted: Instant,
    /// `None` until the session's actor has started.
    handle: Option<SessionHandle>,
    backlog: Vec<Arc<str>>,
    /// Node mode: celebrities whose `author.<id>` events this session gets.
    watching: HashSet<Uuid>,
    /// Whether the celebrities read from the database at admission have been applied; until
    /// then an unfollow arriving meanwhile is remembered so the (older) list cannot undo it.
    watch_loaded: bool,
    unwatched_early: HashSet<Uuid>,
}

pub struct SessionRegistry {
    broker: Addr<BrokerActor>,
    mode: QueueMode,
    stats: Stats,
    sessions: HashMap<Uuid, Entry>,
    by_user: HashMap<Uuid, HashSet<Uuid>>,
    by_author: HashMap<Uuid, HashSet<Uuid>>,
    /// Connections of sessions closed as too slow, and since when, until they are gone.
    condemned: Vec<(Instant, Arc<WriteWatch>)>,
}

enum Handed {
    Ok,
    /// The session's mailbox is full: its client is not reading.
    TooSlow,
    Gone,
}

impl SessionRegistry {
    pub fn new(broker: Addr<BrokerActor>, mode: QueueMode, stats: Stats) -> Self {
        SessionRegistry {
            broker,
            mode,
            stats,
            sessions: HashMap::new(),
            by_user: HashMap::new(),
            by_author: HashMap::new(),
            condemned: Vec::new(),
        }
    }

    /// Forgets a session and releases what it held. Idempotent.
    fn remove(&mut self, session_id: Uuid) -> Option<Entry> {
        let entry = self.sessions.remove(&session_id)?;
        if let Some(set) = self.by_user.get_mut(&entry.user_id) {
            set.remove(&session_id);
            if set.is_empty() {
                self.by_user.remove(&entry.user_id);
            }
        }
        for author in &entry.watching {
            self.unindex_author(*author, session_id);
        }
        if entry.generation != 0 {
            self.broker.do_send(Unsubscribe {
                session_id,
                user_id: entry.user_id,
                authors: entry.watching.iter().copied().collect(),
                generation: entry.generation,
            });
        }
        Some(entry)
    }

    fn unindex_author(&mut self, author: Uuid, session_id: Uuid) {
        if let Some(set) = self.by_author.get_mut(&author) {
            set.remove(&session_id);
            if set.is_empty() {
                self.by_author.remove(&author);
            }
        }
    }

    /// Node mode: starts routing `author`'s events to a session. Returns whether it is new.
    fn watch(&mut self, session_id: Uuid, author: Uuid) -> bool {
        let Some(entry) = self.sessions.get_mut(&session_id) else {
            return false;
        };
        if !entry.watching.insert(author) {
            return false;
        }
        entry.unwatched_early.remove(&author);
        self.by_author.entry(author).or_default().insert(session_id);
        true
    }

    fn deliver(&mut self, session_id: Uuid, payload: &Arc<str>) -> Handed {
        let Some(entry) = self.sessions.get_mut(&session_id) else {
            return Handed::Gone;
        };
        let Some(handle) = &entry.handle else {
            if entry.backlog.len() < ADMISSION_BACKLOG {
                entry.backlog.push(Arc::clone(payload));
                return Handed::Ok;
            }
            return Handed::TooSlow;
        };
        handle.owe();
        match handle.deliver.try_send(Deliver(Arc::clone(payload))) {
            Ok(()) => {
                self.stats.delivered(1);
                Handed::Ok
            }
            Err(SendError::Full(_)) => Handed::TooSlow,
            Err(SendError::Closed(_)) => Handed::Gone,
        }
    }

    /// Closes a session that cannot keep up (1008). Its close frame waits behind what it has
    /// not read yet; if its connection is still open `realtime.write_timeout_secs` later, the
    /// reaper drops it.
    fn drop_slow(&mut self, session_id: Uuid) {
        self.stats.dropped_slow();
        let Some(handle) = self.remove(session_id).and_then(|entry| entry.handle) else {
            return;
        };
        handle.owe();
        handle
            .disconnect
            .do_send(Disconnect(DisconnectReason::TooSlow));
        if let Some(watch) = handle.write {
            self.condemned.push((Instant::now(), watch));
        }
    }

    /// Hands one event to each of `targets`; closes the ones that cannot keep up.
    fn deliver_all(&mut self, targets: Vec<Uuid>, payload: &Arc<str>) {
        for session_id in targets {
            match self.deliver(session_id, payload) {
                Handed::Ok => {}
                Handed::Gone => {
                    self.remove(session_id);
                }
                Handed::TooSlow => {
                    log::warn!("session {session_id} cannot keep up with its events; closing it");
                    self.drop_slow(session_id);
                }
            }
        }
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;
}

/// A WebSocket upgrade is about to complete for `user_id`: route the user's events to this node
/// (and hold them for the session until it starts). Resolves once they are routed here.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Admit {
    pub session_id: Uuid,
    pub user_id: Uuid,
}

impl Handler<Admit> for SessionRegistry {
    // A plain future, not an actor future: see the note on `BrokerActor`'s `Subscribe`.
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: Admit, ctx: &mut Context<Self>) -> Self::Result {
        let Admit {
            session_id,
            user_id,
        } = msg;
        self.sessions.insert(
            session_id,
            Entry {
                user_id,
                generation: 0,
                admitted: Instant::now(),
                handle: None,
                backlog: Vec::new(),
                watching: HashSet::new(),
                watch_loaded: false,
                unwatched_early: HashSet::new(),
            },
        );
        self.by_user.entry(user_id).or_default().insert(session_id);
        let subscribe = self.broker.send(Subscribe {
            session_id,
            user_id,
        });
        let registry = ctx.address();
        Box::pin(async move {
            let result = subscribe.await.unwrap_or(Err(BrokerError::Unavailable));
            registry
                .send(Subscribed {
                    session_id,
                    user_id,
                    result,
                })
                .await
                .unwrap_or(Err(BrokerError::Unavailable))
        })
    }
}

/// The broker's answer to an admission's `Subscribe`.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
struct Subscribed {
    session_id: Uuid,
    user_id: Uuid,
    result: Result<u64, BrokerError>,
}

impl Handler<Subscribed> for SessionRegistry {
    type Result = Result<(), BrokerError>;

    fn handle(&mut self, msg: Subscribed, _: &mut Context<Self>) -> Self::Result {
        let Subscribed {
            session_id,
            user_id,
            result,
        } = msg;
        let generation = match result {
            Ok(generation) => generation,
            Err(error) => {
                self.remove(session_id);
                return Err(error);
            }
        };
        match self.sessions.get_mut(&session_id) {
            Some(entry) => {
                entry.generation = generation;
                // Celebrities a control added while the subscription was on its way were only
                // indexed: take their holds now.
                if !entry.watching.is_empty() {
                    self.broker.do_send(Watch {
                        session_id,
                        authors: entry.watching.iter().copied().collect(),
                        generation,
                    });
                }
                Ok(())
            }
            None => {
                // Dropped meanwhile (the link was lost, or the watchdog gave up on it).
                self.broker.do_send(Unsubscribe {
                    session_id,
                    user_id,
                    authors: Vec::new(),
                    generation,
                });
                Err(BrokerError::Unavailable)
            }
        }
    }
}

/// The celebrities an admitted session's user follows (read after [`Admit`], so any later
/// follow change reaches this node as a control message): route their events to it too.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct WatchAuthors {
    pub session_id: Uuid,
    pub authors: Vec<Uuid>,
}

impl Handler<WatchAuthors> for SessionRegistry {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: WatchAuthors, _: &mut Context<Self>) -> Self::Result {
        let Some(entry) = self.sessions.get_mut(&msg.session_id) else {
            return Box::pin(async { Err(BrokerError::Unavailable) });
        };
        entry.watch_loaded = true;
        let generation = entry.generation;
        let early = std::mem::take(&mut entry.unwatched_early);
        let authors: Vec<Uuid> = match self.mode {
            QueueMode::Node => msg
                .authors
                .into_iter()
                .filter(|author| !early.contains(author))
                .filter(|author| self.watch(msg.session_id, *author))
                .collect(),
            // The session's own queue applies later changes in order: bind them all.
            QueueMode::Session => msg.authors,
        };
        if authors.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        if generation == 0 {
            return Box::pin(async { Err(BrokerError::Unavailable) });
        }
        let watch = self.broker.send(Watch {
            session_id: msg.session_id,
            authors,
            generation,
        });
        Box::pin(async move { watch.await.unwrap_or(Err(BrokerError::Unavailable)) })
    }
}

/// A session's actor has started: events now go to it (after any held for it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub session_id: Uuid,
    pub handle: SessionHandle,
}

impl Handler<Register> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) {
        let Some(entry) = self.sessions.get_mut(&msg.session_id) else {
            // Its admission was undone (the link was lost meanwhile): it must reconnect.
            msg.handle
                .disconnect
                .do_send(Disconnect(DisconnectReason::BrokerLost));
            return;
        };
        let backlog = std::mem::take(&mut entry.backlog);
        entry.handle = Some(msg.handle.clone());
        if self.mode == QueueMode::Session {
            self.broker.do_send(Attach {
                session_id: msg.session_id,
                session: msg.handle,
            });
        }
        for payload in backlog {
            self.deliver_all(vec![msg.session_id], &payload);
        }
    }
}

/// A session has stopped (or was found dead, or never started); release what it held.
/// Idempotent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deregister {
    pub session_id: Uuid,
}

impl Handler<Deregister> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Deregister, _: &mut Context<Self>) {
        self.remove(msg.session_id);
    }
}

/// Node mode: one delivery of the node queue, for every local session its route addresses.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RouteEvent {
    pub route: Route,
    pub payload: Arc<str>,
    /// Released once handled: bounds what the consumer may hand over ahead of the registry.
    pub handed: OwnedSemaphorePermit,
}

impl Handler<RouteEvent> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: RouteEvent, _: &mut Context<Self>) {
        let targets = match msg.route {
            Route::User(user_id) => self.by_user.get(&user_id),
            Route::Author(author_id) => self.by_author.get(&author_id),
        };
        let Some(targets) = targets else {
            return; // a binding on its way out
        };
        let targets: Vec<Uuid> = targets.iter().copied().collect();
        self.deliver_all(targets, &msg.payload);
    }
}

/// Node mode: a local user started or stopped following a celebrity.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyControl {
    pub user_id: Uuid,
    pub control: Control,
}

impl Handler<ApplyControl> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ApplyControl, _: &mut Context<Self>) {
        let Some(sessions) = self.by_user.get(&msg.user_id) else {
            return;
        };
        let sessions: Vec<Uuid> = sessions.iter().copied().collect();
        for session_id in sessions {
            match msg.control {
                Control::Watch(author) => {
                    if self.watch(session_id, author) {
                        let Some(entry) = self.sessions.get(&session_id) else {
                            continue;
                        };
                        if entry.generation == 0 {
                            continue; // still being admitted: its hold comes with the admission
                        }
                        // Fire and forget: a failed bind means a lost link, which closes
                        // every session anyway.
                        self.broker.do_send(Watch {
                            session_id,
                            authors: vec![author],
                            generation: entry.generation,
                        });
                    }
                }
                Control::Unwatch(author) => {
                    let Some(entry) = self.sessions.get_mut(&session_id) else {
                        continue;
                    };
                    if !entry.watch_loaded {
                        entry.unwatched_early.insert(author);
                    }
                    if entry.watching.remove(&author) {
                        let generation = entry.generation;
                        self.unindex_author(author, session_id);
                        self.broker.do_send(Unwatch {
                            authors: vec![author],
                            generation,
                        });
                    }
                }
            }
        }
    }
}

/// Every running session, for the watchdog's rounds.
#[derive(Message)]
#[rtype(result = "Vec<(Uuid, SessionHandle)>")]
pub struct Snapshot;

impl Handler<Snapshot> for SessionRegistry {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.sessions
                .iter()
                .filter_map(|(id, entry)| entry.handle.clone().map(|handle| (*id, handle)))
                .collect(),
        )
    }
}

/// The watchdog's clean-up of admissions whose session never started (a failed upgrade, a
/// client gone mid-handshake): drops those admitted before `older_than`. Returns how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Prune {
    pub older_than: Instant,
}

impl Handler<Prune> for SessionRegistry {
    type Result = usize;

    fn handle(&mut self, msg: Prune, _: &mut Context<Self>) -> usize {
        let stale: Vec<Uuid> = self
            .sessions
            .iter()
            .filter(|(_, entry)| entry.handle.is_none() && entry.admitted < msg.older_than)
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            log::info!("watchdog: dropping session {id}, admitted but never started");
            self.remove(*id);
        }
        stale.len()
    }
}

/// The watchdog's reaper: closes sessions whose connection has taken nothing for `timeout`
/// while output waited for it (their client stopped reading), counting each as too slow, and
/// drops the connections of sessions closed as too slow that are still open after `timeout`.
/// Returns how many sessions it closed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ReapStalled {
    pub timeout: Duration,
}

impl Handler<ReapStalled> for SessionRegistry {
    type Result = usize;

    fn handle(&mut self, msg: ReapStalled, _: &mut Context<Self>) -> usize {
        self.condemned.retain(|(since, watch)| {
            if !watch.is_open() {
                return false;
            }
            if since.elapsed() >= msg.timeout {
                watch.abort();
                return false;
            }
            true
        });
        let stalled: Vec<(Uuid, Arc<WriteWatch>)> = self
            .sessions
            .iter()
            .filter_map(|(id, entry)| {
                let watch = entry.handle.as_ref()?.write.as_ref()?;
                (watch.stalled_for() >= msg.timeout).then(|| (*id, Arc::clone(watch)))
            })
            .collect();
        for (session_id, watch) in &stalled {
            log::warn!(
                "session {session_id}: its client has taken nothing for {:?}; dropping it as too slow",
                watch.stalled_for()
            );
            self.drop_slow(*session_id);
            // Its actor is frozen behind the full socket and cannot close anything itself.
            watch.abort();
        }
        stalled.len()
    }
}

/// The routing keys local sessions need (node mode), for the watchdog's sweep of the broker.
#[derive(Message)]
#[rtype(result = "HashSet<String>")]
pub struct NeededKeys;

impl Handler<NeededKeys> for SessionRegistry {
    type Result = MessageResult<NeededKeys>;

    fn handle(&mut self, _: NeededKeys, _: &mut Context<Self>) -> Self::Result {
        let users = self.by_user.keys().map(|id| user_routing_key(*id));
        let authors = self.by_author.keys().map(|id| author_routing_key(*id));
        MessageResult(users.chain(authors).collect())
    }
}

/// The ids of one user's sessions on this node (running or being admitted).
#[derive(Message)]
#[rtype(result = "Vec<Uuid>")]
pub struct UserSessions(pub Uuid);

impl Handler<UserSessions> for SessionRegistry {
    type Result = MessageResult<UserSessions>;

    fn handle(&mut self, msg: UserSessions, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.by_user
                .get(&msg.0)
                .map(|set| set.iter().copied().collect())
                .unwrap_or_default(),
        )
    }
}

/// How many sessions are running.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SessionCount;

impl Handler<SessionCount> for SessionRegistry {
    type Result = usize;

    fn handle(&mut self, _: SessionCount, _: &mut Context<Self>) -> usize {
        self.sessions
            .values()
            .filter(|entry| entry.handle.is_some())
            .count()
    }
}

/// Asks every session to close (on shutdown); returns how many were asked. Each deregisters
/// itself as it stops.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DisconnectAll(pub DisconnectReason);

impl Handler<DisconnectAll> for SessionRegistry {
    type Result = usize;

    fn handle(&mut self, msg: DisconnectAll, _: &mut Context<Self>) -> usize {
        let mut asked = 0;
        for handle in self.sessions.values().filter_map(|e| e.handle.as_ref()) {
            handle.disconnect.do_send(Disconnect(msg.0));
            asked += 1;
        }
        asked
    }
}

/// The broker link is gone, and every queue and binding with it: every session is told to
/// reconnect, and everything this node held is forgotten (it will not be released).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkLost;

impl Handler<LinkLost> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, _: LinkLost, _: &mut Context<Self>) {
        for entry in self.sessions.values() {
            if let Some(handle) = &entry.handle {
                handle
                    .disconnect
                    .do_send(Disconnect(DisconnectReason::BrokerLost));
            }
        }
        self.sessions.clear();
        self.by_user.clear();
        self.by_author.clear();
    }
}
