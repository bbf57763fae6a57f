//! The registry's side of relinking (see `session::relink`): which sessions hold their events
//! since the broker link was lost, routing one again on the current link, and letting it
//! consume and fill its gap once that is done.

use actix::prelude::*;
use uuid::Uuid;

use super::SessionRegistry;
use crate::config::QueueMode;
use crate::realtime::broker::error::BrokerError;
use crate::realtime::routing::AttachSession;
use crate::realtime::session::protocol::FeedSync;

/// The sessions holding their events since the broker link was lost, to be rerouted on the
/// current one: `(session, user)` pairs.
#[derive(Message)]
#[rtype(result = "Vec<(Uuid, Uuid)>")]
pub struct HeldSessions;

impl Handler<HeldSessions> for SessionRegistry {
    type Result = MessageResult<HeldSessions>;

    fn handle(&mut self, _: HeldSessions, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.sessions
                .iter()
                .filter(|(_, entry)| entry.link_held && entry.handle.is_some())
                .map(|(id, entry)| (*id, entry.user_id))
                .collect(),
        )
    }
}

/// Routes a running session's user to this node again, on the current link (its earlier
/// routing died with the old one). Like `Admit`, it is followed by `WatchAuthors` with the
/// celebrities read afterwards.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct Reroute {
    pub session_id: Uuid,
}

impl Handler<Reroute> for SessionRegistry {
    type Result = ResponseFuture<Result<(), BrokerError>>;

    fn handle(&mut self, msg: Reroute, ctx: &mut Context<Self>) -> Self::Result {
        let session_id = msg.session_id;
        let Some(entry) = self.sessions.get_mut(&session_id) else {
            return Box::pin(async { Err(BrokerError::Unavailable) });
        };
        let user_id = entry.user_id;
        entry.generation = 0;
        entry.watch_loaded = false;
        entry.unwatched_early.clear();
        let watched = std::mem::take(&mut entry.watching);
        for author in watched {
            self.unindex_author(author, session_id);
        }
        self.route_user(session_id, user_id, ctx)
    }
}

/// A held session's routing is back in place: it consumes again (session mode) and fills its
/// gap from the log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relinked {
    pub session_id: Uuid,
}

impl Handler<Relinked> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Relinked, _: &mut Context<Self>) {
        let Some(entry) = self.sessions.get_mut(&msg.session_id) else {
            return;
        };
        let Some(handle) = entry.handle.clone() else {
            return;
        };
        // Lost again since its rerouting succeeded: it stays held for the next pass.
        if !entry.link_held || entry.generation == 0 {
            return;
        }
        entry.link_held = false;
        if self.mode == QueueMode::Session {
            self.broker.attach.do_send(AttachSession {
                session_id: msg.session_id,
                session: handle.clone(),
            });
        }
        handle.sync.do_send(FeedSync::CatchUp { after: None });
    }
}
