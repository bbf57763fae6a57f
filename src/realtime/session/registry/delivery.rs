//! Handing events to sessions: node-queue deliveries by route, follow changes by user (a new
//! celebrity followed is routed, then its gap since the change's position filled from the log),
//! and closing the sessions that cannot keep up.

use actix::prelude::*;
use uuid::Uuid;

use super::{AuthorsBound, SessionRegistry, ADMISSION_BACKLOG};
use crate::realtime::broker::error::BrokerError;
use crate::realtime::broker::topology::Route;
use crate::realtime::control::Control;
use crate::realtime::events::Frame;
use crate::realtime::routing::{ApplyControl, RouteAuthors, RouteEvent, UnrouteAuthors};
use crate::realtime::session::protocol::{Deliver, Disconnect, DisconnectReason, FeedSync};
use crate::realtime::session::worker_hub::{HandOut, Undelivered, WorkerHub};
use crate::realtime::trace::Trace;

enum Handed {
    Ok,
    /// The session's mailbox is full: its client is not reading.
    TooSlow,
    Gone,
    /// Left with its thread's hub, which hands it over with the hub's other sessions.
    ViaHub,
}

/// One event's sessions on one worker hub.
struct HubBatch {
    hub: Addr<WorkerHub>,
    id: u64,
    sessions: Vec<Uuid>,
}

impl SessionRegistry {
    fn deliver(
        &mut self,
        session_id: Uuid,
        frame: &Frame,
        trace: &Trace,
        batches: &mut Vec<HubBatch>,
    ) -> Handed {
        let Some(entry) = self.sessions.get_mut(&session_id) else {
            return Handed::Gone;
        };
        let Some(handle) = &entry.handle else {
            if entry.backlog.len() < ADMISSION_BACKLOG {
                entry.backlog.push(frame.clone());
                return Handed::Ok;
            }
            return Handed::TooSlow;
        };
        if let Some(hub) = &entry.hub {
            // A node has a handful of worker threads: a scan beats a map.
            match batches.iter_mut().find(|batch| batch.id == hub.id) {
                Some(batch) => batch.sessions.push(session_id),
                None => batches.push(HubBatch {
                    hub: hub.addr.clone(),
                    id: hub.id,
                    sessions: vec![session_id],
                }),
            }
            return Handed::ViaHub;
        }
        handle.owe();
        match handle
            .deliver
            .try_send(Deliver(frame.clone(), trace.clone()))
        {
            Ok(()) => {
                self.stats.add_delivered(1);
                Handed::Ok
            }
            Err(SendError::Full(_)) => {
                self.too_slow(session_id, frame.0);
                Handed::TooSlow
            }
            Err(SendError::Closed(_)) => Handed::Gone,
        }
    }

    fn too_slow(&self, session_id: Uuid, seq: i64) {
        log::warn!(
            "session {session_id}: its mailbox is full at position {seq}; closing it as too slow"
        );
    }

    /// Closes a session that cannot keep up (1008). Its close frame waits behind what it has
    /// not read yet; if its connection is still open `realtime.write_timeout_secs` later, the
    /// reaper drops it.
    pub(super) fn drop_slow(&mut self, session_id: Uuid) {
        self.stats.count_dropped_slow();
        let Some(handle) = self.remove(session_id).and_then(|entry| entry.handle) else {
            return;
        };
        // `remove` has condemned its connection: if the close frame cannot get through, the
        // reaper drops it.
        handle
            .disconnect
            .do_send(Disconnect(DisconnectReason::TooSlow));
    }

    /// Hands one event to each of `targets`: one message per worker hub for the sessions that
    /// joined one (see `worker_hub`), straight to the others; closes the ones that cannot
    /// keep up.
    pub(super) fn deliver_all(&mut self, targets: Vec<Uuid>, frame: &Frame, trace: &Trace) {
        trace.handing(&self.stats);
        let mut batches = Vec::new();
        for session_id in targets {
            match self.deliver(session_id, frame, trace, &mut batches) {
                Handed::Ok | Handed::ViaHub => {}
                Handed::Gone => {
                    self.remove(session_id);
                }
                Handed::TooSlow => self.drop_slow(session_id),
            }
        }
        let Some(undelivered) = &self.undelivered else {
            return; // not started: nobody joined a hub through it yet
        };
        for batch in batches {
            batch.hub.do_send(HandOut {
                sessions: batch.sessions,
                frame: frame.clone(),
                trace: trace.clone(),
                stats: self.stats.clone(),
                undelivered: undelivered.clone(),
            });
        }
    }
}

impl Handler<Undelivered> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Undelivered, _: &mut Context<Self>) {
        for session_id in msg.gone {
            self.remove(session_id);
        }
        for (session_id, seq) in msg.too_slow {
            // Only once: a later event may find the same full mailbox before this arrives.
            if self.sessions.contains_key(&session_id) {
                self.too_slow(session_id, seq);
                self.drop_slow(session_id);
            }
        }
    }
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
        self.deliver_all(targets, &msg.frame, &msg.trace);
    }
}

impl SessionRegistry {
    /// Routes `author`'s events to a session that has just started watching it at position
    /// `seq`. Events of `author` after `seq` were published once, to a key the session did not
    /// have: a running session holds what arrives, the key is bound, then it fills from `seq`.
    /// A session being admitted has its first fill wait for the bind instead; one whose routing
    /// is not in place yet gets the key with it (`UserRouted`), or on the next link (`relink`).
    fn route_watched(&mut self, session_id: Uuid, author: Uuid, seq: i64, ctx: &mut Context<Self>) {
        let Some(entry) = self.sessions.get_mut(&session_id) else {
            return;
        };
        if entry.generation == 0 {
            return;
        }
        let sync = match &entry.handle {
            Some(handle) => {
                handle.sync.do_send(FeedSync::Hold);
                Some(handle.sync.clone())
            }
            None => {
                entry.binds_in_flight += 1;
                None
            }
        };
        let bound = self.broker.route_authors.send(RouteAuthors {
            session_id,
            authors: vec![author],
            generation: entry.generation,
        });
        let registry = ctx.address();
        actix_rt::spawn(async move {
            let bound: Result<(), BrokerError> =
                bound.await.unwrap_or(Err(BrokerError::Unavailable));
            if let Err(error) = bound {
                // The link is going: the relink's fill covers this one's gap.
                log::warn!("routing {author} to session {session_id}: {error}");
            }
            match sync {
                Some(sync) => sync.do_send(FeedSync::CatchUp { after: Some(seq) }),
                None => registry.do_send(AuthorsBound { session_id }),
            }
        });
    }
}

impl Handler<ApplyControl> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: ApplyControl, ctx: &mut Context<Self>) {
        let Some(sessions) = self.by_user.get(&msg.user_id) else {
            return;
        };
        let sessions: Vec<Uuid> = sessions.iter().copied().collect();
        for session_id in sessions {
            match msg.control {
                Control::Watch(author) => {
                    if !self.watch(session_id, author) {
                        continue;
                    }
                    self.route_watched(session_id, author, msg.seq, ctx);
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
                        self.broker.unroute_authors.do_send(UnrouteAuthors {
                            authors: vec![author],
                            generation,
                        });
                    }
                }
            }
        }
    }
}
