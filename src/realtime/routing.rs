//! The two ports between the `SessionRegistry` and the `BrokerActor`, so that neither imports the
//! other (as [`SessionHandle`] does between sessions and the registry). `startup` wires them.
//!
//! - [`BrokerPort`]: what the registry asks of the broker for a session: route its user's events
//!   here, route some celebrities' events here too (or stop), attach it to its own queue
//!   (session mode), release everything it held.
//! - [`RegistryPort`]: what the broker and the node queue's consumer tell the registry: a
//!   delivery to hand out, a follow change to apply, the link lost.
//!
//! Every hold a session takes belongs to one broker link, named by its *generation*: a release
//! that names an older link is ignored, since that link's queues and bindings are gone already.

use actix::dev::ToEnvelope;
use actix::prelude::*;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use super::control::Control;
use super::events::Frame;
use super::trace::Trace;
use crate::realtime::broker::error::BrokerError;
use crate::realtime::broker::topology::Route;
use crate::realtime::session::protocol::SessionHandle;

/// Route `user.<id>` to this node for a session about to start (node mode: bind it to the node
/// queue; session mode: declare the session's queue, bound to it). Resolves once in place, with
/// the generation of the link the hold belongs to.
#[derive(Message)]
#[rtype(result = "Result<u64, BrokerError>")]
pub struct RouteUser {
    pub session_id: Uuid,
    pub user_id: Uuid,
}

/// Route these celebrities' `author.<id>` events to a session too. Resolves once bound.
#[derive(Message)]
#[rtype(result = "Result<(), BrokerError>")]
pub struct RouteAuthors {
    pub session_id: Uuid,
    pub authors: Vec<Uuid>,
    pub generation: u64,
}

/// Node mode: a session no longer follows these celebrities; drop its holds on their keys.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnrouteAuthors {
    pub authors: Vec<Uuid>,
    pub generation: u64,
}

/// Session mode: a session's actor is running; start consuming its queue for it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachSession {
    pub session_id: Uuid,
    pub session: SessionHandle,
}

/// A session has ended: release its user's key and its celebrities' keys (node mode) or its
/// queue (session mode).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseSession {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub authors: Vec<Uuid>,
    pub generation: u64,
}

/// What the registry holds of the broker.
#[derive(Clone)]
pub struct BrokerPort {
    pub route_user: Recipient<RouteUser>,
    pub route_authors: Recipient<RouteAuthors>,
    pub unroute_authors: Recipient<UnrouteAuthors>,
    pub attach: Recipient<AttachSession>,
    pub release: Recipient<ReleaseSession>,
}

impl BrokerPort {
    pub fn new<A>(addr: &Addr<A>) -> Self
    where
        A: Actor
            + Handler<RouteUser>
            + Handler<RouteAuthors>
            + Handler<UnrouteAuthors>
            + Handler<AttachSession>
            + Handler<ReleaseSession>,
        A::Context: ToEnvelope<A, RouteUser>
            + ToEnvelope<A, RouteAuthors>
            + ToEnvelope<A, UnrouteAuthors>
            + ToEnvelope<A, AttachSession>
            + ToEnvelope<A, ReleaseSession>,
    {
        BrokerPort {
            route_user: addr.clone().recipient(),
            route_authors: addr.clone().recipient(),
            unroute_authors: addr.clone().recipient(),
            attach: addr.clone().recipient(),
            release: addr.clone().recipient(),
        }
    }
}

/// Node mode: one delivery of the node queue, for every local session its route addresses.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RouteEvent {
    pub route: Route,
    pub frame: Frame,
    pub trace: Trace,
    /// Released once handled: bounds what the consumer may hand over ahead of the registry.
    pub handed: OwnedSemaphorePermit,
}

/// Node mode: a local user started or stopped following a celebrity, at position `seq`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyControl {
    pub user_id: Uuid,
    pub control: Control,
    pub seq: i64,
}

/// The broker link is gone, and every queue and binding with it: every session holds its live
/// events until its routing is rebuilt on the next link (see `relink`) and its gap filled from
/// the log; what this node held on the old link is forgotten (it will not be released).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LinkLost;

/// What the broker (and the node queue's consumer) hold of the registry.
#[derive(Clone)]
pub struct RegistryPort {
    pub route_event: Recipient<RouteEvent>,
    pub apply_control: Recipient<ApplyControl>,
    pub link_lost: Recipient<LinkLost>,
}

impl RegistryPort {
    pub fn new<A>(addr: &Addr<A>) -> Self
    where
        A: Actor + Handler<RouteEvent> + Handler<ApplyControl> + Handler<LinkLost>,
        A::Context:
            ToEnvelope<A, RouteEvent> + ToEnvelope<A, ApplyControl> + ToEnvelope<A, LinkLost>,
    {
        RegistryPort {
            route_event: addr.clone().recipient(),
            apply_control: addr.clone().recipient(),
            link_lost: addr.clone().recipient(),
        }
    }
}
