//! The registry's upkeep, for the watchdog and for shutdown: snapshots, pruning admissions that
//! never started, reaping stalled connections, the keys still needed, counts, closing all, and
//! holding every session's events when the link is lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use uuid::Uuid;

use super::SessionRegistry;
use crate::realtime::broker::topology::{author_routing_key, user_routing_key};
use crate::realtime::routing::LinkLost;
use crate::realtime::session::protocol::{Disconnect, DisconnectReason, FeedSync, SessionHandle};
use crate::realtime::session::write_watch::WriteWatch;

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
/// drops the connections of sessions the registry let go of (see `condemn`) that are still open
/// `timeout` later. Returns how many sessions it closed.
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
                (watch.is_open() && watch.stalled_for() >= msg.timeout)
                    .then(|| (*id, Arc::clone(watch)))
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

impl Handler<LinkLost> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, _: LinkLost, _: &mut Context<Self>) {
        self.link_epoch += 1;
        // Admissions still under way fail (their upgrade answers 503); running sessions stay
        // and hold their events until `relink` has routed them again.
        let admitting: Vec<Uuid> = self
            .sessions
            .iter()
            .filter(|(_, entry)| entry.handle.is_none())
            .map(|(id, _)| *id)
            .collect();
        for session_id in admitting {
            self.remove(session_id);
        }
        for entry in self.sessions.values_mut() {
            entry.generation = 0;
            if let Some(handle) = &entry.handle {
                if !std::mem::replace(&mut entry.link_held, true) {
                    handle.sync.do_send(FeedSync::Hold);
                }
            }
        }
    }
}
