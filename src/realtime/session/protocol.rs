//! What every session actor answers: the WebSocket session, and any stand-in (tests use small
//! actors in its place). The registry, broker and watchdog speak to sessions only through these,
//! via a [`SessionHandle`], never through a concrete actor type.

use std::sync::Arc;
use std::time::Instant;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use uuid::Uuid;

use super::write_watch::WriteWatch;
use crate::realtime::events::Frame;
use crate::realtime::trace::Trace;

/// One live feed event (its position and its text) for the session to write as one text
/// frame, unless it has it already; with its message's stamps, to time the write.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub Frame, pub Trace);

/// Keeping a session's feed gap-free around a routing change (see `in_order`).
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum FeedSync {
    /// A routing change is starting: hold live events until the matching `CatchUp`.
    Hold,
    /// The routing change is in place: fill the gap from the log, from every author followed,
    /// after `after` (the change's position; `None`: after the last event sent), then release
    /// what was held.
    CatchUp { after: Option<i64> },
}

/// The watchdog's periodic call: the session pings its client and reports when it last heard
/// anything from it.
#[derive(Message)]
#[rtype(result = "Instant")]
pub struct Heartbeat;

/// Why the server ends a session; the WebSocket session maps each to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client answered nothing for `realtime.client_timeout_secs`.
    ClientTimeout,
    /// The server is shutting down (close code 1001).
    ServerShutdown,
    /// The broker cannot route this session's events any more (its queue was deleted under
    /// it); the client should reconnect, with `since` (close code 1013).
    BrokerLost,
    /// The client reads its events slower than they come; it should reconnect and catch up
    /// from the feed (close code 1008).
    TooSlow,
    /// The session's token expired or was revoked (`POST /logout`): the client must log in
    /// again (close code 4001).
    Unauthorized,
}

impl DisconnectReason {
    /// The WebSocket close code and reason every transport says it with (a stream that has no
    /// close frame counts the code in the metrics all the same).
    pub fn close(self) -> (u16, &'static str) {
        match self {
            DisconnectReason::ClientTimeout => (1008, "client timeout"),
            DisconnectReason::ServerShutdown => (1001, "server shutting down"),
            DisconnectReason::BrokerLost => (1013, "event broker unavailable"),
            DisconnectReason::TooSlow => (1008, "too slow: reconnect and reload"),
            DisconnectReason::Unauthorized => (4001, "token expired or revoked: log in again"),
        }
    }
}

/// Asks a session to close its client connection and stop.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Disconnect(pub DisconnectReason);

/// Everything the realtime actors hold of one session.
#[derive(Clone)]
pub struct SessionHandle {
    pub user_id: Uuid,
    pub deliver: Recipient<Deliver>,
    pub sync: Recipient<FeedSync>,
    pub heartbeat: Recipient<Heartbeat>,
    pub disconnect: Recipient<Disconnect>,
    /// Whether its connection takes what is sent (WebSocket sessions; `None` for stand-ins).
    pub write: Option<Arc<WriteWatch>>,
}

impl SessionHandle {
    pub fn new<A>(user_id: Uuid, addr: &Addr<A>) -> Self
    where
        A: Actor + Handler<Deliver> + Handler<FeedSync> + Handler<Heartbeat> + Handler<Disconnect>,
        A::Context: ToEnvelope<A, Deliver>
            + ToEnvelope<A, FeedSync>
            + ToEnvelope<A, Heartbeat>
            + ToEnvelope<A, Disconnect>,
    {
        SessionHandle {
            user_id,
            deliver: addr.clone().recipient(),
            sync: addr.clone().recipient(),
            heartbeat: addr.clone().recipient(),
            disconnect: addr.clone().recipient(),
            write: None,
        }
    }

    /// The same handle, watched for a connection that stops taking output.
    pub fn with_write_watch(mut self, watch: Option<Arc<WriteWatch>>) -> Self {
        self.write = watch;
        self
    }

    /// Marks output as owed to the session: call before queueing anything for it, so the
    /// mark is always followed by the wake-up (and body poll) that clears it.
    pub fn owe(&self) {
        if let Some(watch) = &self.write {
            watch.owed();
        }
    }

    /// False once the session actor has stopped.
    pub fn is_alive(&self) -> bool {
        self.deliver.connected()
    }
}
