//! `SessionRegistry`: the one place that knows who is connected to this node. It maps session
//! ids to their user and handle, and users to their sessions, and tells the broker when a
//! session needs its subscription started or released.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;
use uuid::Uuid;

use super::broker::{Attach, BrokerActor, Detach};
use super::messages::{Disconnect, DisconnectReason, SessionHandle};

pub struct SessionRegistry {
    broker: Addr<BrokerActor>,
    sessions: HashMap<Uuid, SessionHandle>,
    by_user: HashMap<Uuid, HashSet<Uuid>>,
}

impl SessionRegistry {
    pub fn new(broker: Addr<BrokerActor>) -> Self {
        SessionRegistry {
            broker,
            sessions: HashMap::new(),
            by_user: HashMap::new(),
        }
    }

    fn remove(&mut self, session_id: Uuid) -> Option<SessionHandle> {
        let handle = self.sessions.remove(&session_id)?;
        if let Some(set) = self.by_user.get_mut(&handle.user_id) {
            set.remove(&session_id);
            if set.is_empty() {
                self.by_user.remove(&handle.user_id);
            }
        }
        Some(handle)
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;
}

/// A session has started; start routing its user's events to it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub session_id: Uuid,
    pub handle: SessionHandle,
}

impl Handler<Register> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) {
        self.by_user
            .entry(msg.handle.user_id)
            .or_default()
            .insert(msg.session_id);
        self.broker.do_send(Attach {
            session_id: msg.session_id,
            session: msg.handle.clone(),
        });
        self.sessions.insert(msg.session_id, msg.handle);
    }
}

/// A session has stopped (or was found dead); release what it held. Idempotent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deregister {
    pub session_id: Uuid,
}

impl Handler<Deregister> for SessionRegistry {
    type Result = ();

    fn handle(&mut self, msg: Deregister, _: &mut Context<Self>) {
        if self.remove(msg.session_id).is_some() {
            self.broker.do_send(Detach {
                session_id: msg.session_id,
            });
        }
    }
}

/// Every registered session, for the watchdog's rounds.
#[derive(Message)]
#[rtype(result = "Vec<(Uuid, SessionHandle)>")]
pub struct Snapshot;

impl Handler<Snapshot> for SessionRegistry {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.sessions
                .iter()
                .map(|(id, handle)| (*id, handle.clone()))
                .collect(),
        )
    }
}

/// The ids of one user's sessions on this node.
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

/// How many sessions are registered.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct SessionCount;

impl Handler<SessionCount> for SessionRegistry {
    type Result = usize;

    fn handle(&mut self, _: SessionCount, _: &mut Context<Self>) -> usize {
        self.sessions.len()
    }
}

/// Asks every session to close (on shutdown, or when the broker is lost); returns how many
/// were asked. Each deregisters itself as it stops.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct DisconnectAll(pub DisconnectReason);

impl Handler<DisconnectAll> for SessionRegistry {
    type Result = usize;

    fn handle(&mut self, msg: DisconnectAll, _: &mut Context<Self>) -> usize {
        for handle in self.sessions.values() {
            handle.disconnect.do_send(Disconnect(msg.0));
        }
        self.sessions.len()
    }
}
