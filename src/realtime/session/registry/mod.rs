//! `SessionRegistry`: the one place that knows who is connected to this node. It admits a
//! session before its WebSocket upgrade completes (asking the broker to route its user's events
//! here first), keeps sessions by id, by user and (node mode) by the celebrities they follow,
//! and in node mode hands every delivery of the node queue to exactly the sessions its routing
//! key addresses. When the broker link is lost its sessions stay: each holds its live events
//! until `relink` has rebuilt its routing on the next link ([`Reroute`]), then fills its gap from
//! the log ([`Relinked`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use uuid::Uuid;

use super::protocol::{Disconnect, DisconnectReason, FeedSync, SessionHandle};
use super::worker_hub::{HubLink, Undelivered};
use super::write_watch::WriteWatch;
use crate::config::QueueMode;
use crate::realtime::broker::error::BrokerError;
use crate::realtime::events::Frame;
use crate::realtime::routing::{
    AttachSession, BrokerPort, ReleaseSession, RouteAuthors, RouteUser,
};
use crate::realtime::stats::Stats;
use crate::realtime::trace::Trace;

mod delivery;
pub mod recheck;
pub mod relinking;
pub mod upkeep;

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
    /// Its thread's hub, once it has started (see `worker_hub`).
    hub: Option<HubLink>,
    backlog: Vec<Frame>,
    /// Holding its live events since the link its routing belonged to was lost.
    link_held: bool,
    /// Celebrities a control routed to it while it was being admitted, not bound yet: its
    /// first fill waits for them (see [`AuthorsBound`]).
    binds_in_flight: u32,
    /// Node mode: celebrities whose `author.<id>` events this session gets.
    watching: HashSet<Uuid>,
    /// Whether the celebrities read from the database at admission have been applied; until
    /// then an unfollow arriving meanwhile is remembered so the (older) list cannot undo it.
    watch_loaded: bool,
    unwatched_early: HashSet<Uuid>,
}

pub struct SessionRegistry {
    broker: BrokerPort,
    mode: QueueMode,
    stats: Stats,
    sessions: HashMap<Uuid, Entry>,
    by_user: HashMap<Uuid, HashSet<Uuid>>,
    by_author: HashMap<Uuid, HashSet<Uuid>>,
    /// Connections of sessions closed as too slow, and since when, until they are gone.
    condemned: Vec<(Instant, Arc<WriteWatch>)>,
    /// How many times the broker link was lost: a routing begun before the latest loss
    /// belongs to a dead link.
    link_epoch: u64,
    /// Where worker hubs report sessions they could not hand an event to (set on start).
    undelivered: Option<Recipient<Undelivered>>,
}

impl SessionRegistry {
    pub fn new(broker: BrokerPort, mode: QueueMode, stats: Stats) -> Self {
        SessionRegistry {
            broker,
            mode,
            stats,
            sessions: HashMap::new(),
            by_user: HashMap::new(),
            by_author: HashMap::new(),
            condemned: Vec::new(),
            link_epoch: 0,
            undelivered: None,
        }
    }

    /// The ids of one user's sessions on this node (running or being admitted): see `probes`.
    pub(in crate::realtime) fn sessions_of(&self, user_id: Uuid) -> Vec<Uuid> {
        self.by_user
            .get(&user_id)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default()
    }

    /// A session the registry lets go of may be frozen behind a client that stopped reading
    /// (then it cannot act on being told to close): if its connection is still open after the
    /// write timeout, the reaper drops it.
    fn condemn(&mut self, watch: &Arc<WriteWatch>) {
        if watch.is_open() {
            self.condemned.push((Instant::now(), Arc::clone(watch)));
        }
    }

    /// Forgets a session and releases what it held. Idempotent.
    fn remove(&mut self, session_id: Uuid) -> Option<Entry> {
        let entry = self.sessions.remove(&session_id)?;
        if let Some(watch) = entry.handle.as_ref().and_then(|h| h.write.as_ref()) {
            self.condemn(watch);
        }
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
            self.broker.release.do_send(ReleaseSession {
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

    /// Asks the broker to route `user_id`'s events to a session's entry; resolves once they
    /// are (the answer comes back as [`UserRouted`], which records its link).
    fn route_user(
        &mut self,
        session_id: Uuid,
        user_id: Uuid,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<(), BrokerError>> {
        let subscribe = self.broker.route_user.send(RouteUser {
            session_id,
            user_id,
        });
        let (registry, epoch) = (ctx.address(), self.link_epoch);
        Box::pin(async move {
            let result = subscribe.await.unwrap_or(Err(BrokerError::Unavailable));
            registry
                .send(UserRouted {
                    session_id,
                    user_id,
                    epoch,
                    result,
                })
                .await
                .unwrap_or(Err(BrokerError::Unavailable))
        })
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
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.undelivered = Some(ctx.address().recipient());
    }
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
    // A plain future, not an actor future: see the note on `BrokerActor`'s `RouteUser`.
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
                hub: None,
                link_held: false,
                binds_in_flight: 0,
                watching: HashSet::new(),
                watch_loaded: false,
                unwatched_early: HashSet::new(),
            },
        );
        self.by_user.entry(user_id).or_default().insert(session_id);
        self.route_user(session_id, user_id, ctx)
    }
}

/// The broker's answer to an admission's `RouteUser`.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
struct UserRouted {
    session_id: Uuid,
    user_id: Uuid,
    /// [`SessionRegistry::link_epoch`] when the routing began.
    epoch: u64,
    result: Result<u64, BrokerError>,
}

impl Handler<UserRouted> for SessionRegistry {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: UserRouted, _: &mut Context<Self>) -> Self::Result {
        let UserRouted {
            session_id,
            user_id,
            epoch,
            result,
        } = msg;
        let failed = |error| -> Self::Result { Box::pin(async move { Err(error) }) };
        // A routing that began before the latest link loss belongs to a dead link, whatever it
        // answered.
        let result = result.and_then(|generation| {
            if epoch == self.link_epoch {
                Ok(generation)
            } else {
                Err(BrokerError::Unavailable)
            }
        });
        let Some(entry) = self.sessions.get_mut(&session_id) else {
            // Dropped meanwhile (the watchdog gave up on it, or it stopped).
            if let Ok(generation) = result {
                self.broker.release.do_send(ReleaseSession {
                    session_id,
                    user_id,
                    authors: Vec::new(),
                    generation,
                });
            }
            return failed(BrokerError::Unavailable);
        };
        let generation = match result {
            Ok(generation) => generation,
            // A running session being rerouted stays, held, for the next attempt; an
            // admission is undone.
            Err(error) if entry.handle.is_some() => return failed(error),
            Err(error) => {
                self.remove(session_id);
                return failed(error);
            }
        };
        entry.generation = generation;
        if entry.watching.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        // Celebrities a control added while the routing was on its way were only indexed:
        // route them now, and answer once they are (the session's first fill must not read
        // the log before they are bound).
        let bound = self.broker.route_authors.send(RouteAuthors {
            session_id,
            authors: entry.watching.iter().copied().collect(),
            generation,
        });
        Box::pin(async move { bound.await.unwrap_or(Err(BrokerError::Unavailable)) })
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
        let watch = self.broker.route_authors.send(RouteAuthors {
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
    /// The hub of the session's thread, which its live events go through (`None`: straight
    /// to the handle, as for stand-ins that joined none).
    pub hub: Option<HubLink>,
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
        entry.hub = msg.hub;
        // The session holds its events until its first fill; that fill may read the log only
        // once everything routed to it is bound.
        if entry.binds_in_flight == 0 {
            msg.handle.sync.do_send(FeedSync::CatchUp { after: None });
        }
        if self.mode == QueueMode::Session {
            self.broker.attach.do_send(AttachSession {
                session_id: msg.session_id,
                session: msg.handle,
            });
        }
        for frame in backlog {
            // Untimed: it waited for its session, not in the delivery path.
            self.deliver_all(vec![msg.session_id], &frame, &Trace::default());
        }
    }
}

/// A bind a control asked for during a session's admission is done (or failed: a failed bind
/// means a lost link, whose relink fills the gap).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AuthorsBound {
    pub session_id: Uuid,
}

impl Handler<AuthorsBound> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: AuthorsBound, _: &mut Context<Self>) {
        let Some(entry) = self.sessions.get_mut(&msg.session_id) else {
            return;
        };
        entry.binds_in_flight = entry.binds_in_flight.saturating_sub(1);
        if let (0, Some(handle)) = (entry.binds_in_flight, &entry.handle) {
            handle.sync.do_send(FeedSync::CatchUp { after: None });
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
