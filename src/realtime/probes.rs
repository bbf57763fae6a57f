//! Probes for tests and diagnostics: questions about the realtime actors' state that the
//! server itself never asks. Nothing in herald sends these; the integration tests do.

use actix::prelude::*;
use uuid::Uuid;

use crate::realtime::broker::actor::BrokerActor;
use crate::realtime::session::registry::SessionRegistry;

/// The queues this node consumes: the node queue, or every session queue.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct Queues;

impl Handler<Queues> for BrokerActor {
    type Result = MessageResult<Queues>;

    fn handle(&mut self, _: Queues, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.queues())
    }
}

/// How many routing keys are bound to the node queue (node mode; 0 in session mode).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct BoundKeys;

impl Handler<BoundKeys> for BrokerActor {
    type Result = usize;

    fn handle(&mut self, _: BoundKeys, _: &mut Context<Self>) -> usize {
        self.bound_keys()
    }
}

/// The ids of one user's sessions on this node (running or being admitted).
#[derive(Message)]
#[rtype(result = "Vec<Uuid>")]
pub struct UserSessions(pub Uuid);

impl Handler<UserSessions> for SessionRegistry {
    type Result = MessageResult<UserSessions>;

    fn handle(&mut self, msg: UserSessions, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.sessions_of(msg.0))
    }
}
