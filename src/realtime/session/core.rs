//! `SessionCore`: what a session does whatever its transport, written once. It registers the
//! session with the registry once its user's events are routed here, keeps its frames in
//! position order and each once (`in_order`), fills its gaps from the log (`history`) and
//! retries a fill that failed, resets a client whose gap the history cannot cover, counts all of
//! it, and remembers when the client was last heard from. A transport's actor owns one and only
//! frames what the core hands it ([`Out`]) and reads its client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::caps::SessionPermit;
use super::history::{FeedHistory, Fill};
use super::in_order::{InOrder, Released};
use super::protocol::{Deliver, Disconnect, FeedSync, Heartbeat, SessionHandle};
use super::registry::{Deregister, Register, SessionRegistry};
use super::token_watch::{TokenWatch, WatchToken};
use super::worker_hub;
use super::write_watch::WriteWatch;
use crate::realtime::events::reset_frame;
use crate::realtime::stats::Stats;

/// How long a fill that failed (PostgreSQL unreachable) waits before it is tried again; live
/// events stay held meanwhile.
const FILL_RETRY: Duration = Duration::from_secs(1);

/// What a session needs to fill its feed, whatever its transport.
#[derive(Clone)]
pub struct FeedDeps {
    pub history: FeedHistory,
    pub stats: Stats,
    /// Live events a session may hold while a fill is under way.
    pub held_max: usize,
}

/// Where a session's feed starts.
#[derive(Debug, Clone, Copy)]
pub struct FeedStart {
    /// The client has everything up to here: its `since`, or the position read at admission.
    pub after: i64,
    /// Whether `after` is the client's own (a resume).
    pub resumed: bool,
}

impl FeedStart {
    /// After the client's `since` when it names one (a resume), else after `head`, the
    /// position read at admission.
    pub fn new(since: Option<i64>, head: i64) -> Self {
        FeedStart {
            after: since.unwrap_or(head),
            resumed: since.is_some(),
        }
    }
}

/// The token a session was opened with: its user, and what the token watch needs to close the
/// session with 4001 once the token expires or is revoked.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub user_id: Uuid,
    pub token_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

/// What the core asks its transport to write, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out<'a> {
    /// A feed event at position `seq`: its JSON object as §3 sends it.
    Event(i64, &'a str),
    /// The gap cannot be filled: the client reloads and continues from `seq`. The JSON is the
    /// `feed.reset` object.
    Reset(i64, &'a str),
}

/// A fill's answer, handed back to the session's actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Filled {
    after: i64,
    /// How many resets the session had sent when the fill was asked for.
    resets_before: u64,
    fill: Fill,
}

pub struct SessionCore {
    id: Uuid,
    user_id: Uuid,
    registry: Addr<SessionRegistry>,
    deps: FeedDeps,
    gate: InOrder,
    last_heard: Instant,
    write: Option<Arc<WriteWatch>>,
    registered: bool,
    /// Its place under the session caps (see `caps`), given back when the core is dropped.
    permit: Option<SessionPermit>,
    /// The token watch to register the session's token with, when it registers.
    token: Option<(Addr<TokenWatch>, TokenGrant)>,
    /// The position read at admission, while its first fill has not been asked for, when the
    /// client named none: that fill may skip the bound checks (`FeedHistory::fill_fresh`).
    fresh_start: Option<i64>,
    /// How many `feed.reset` frames it has sent: a fill that answers "reset" after another
    /// reset went out meanwhile adds nothing (the client reloads from a later position already).
    resets_sent: u64,
}

impl SessionCore {
    pub fn new(id: Uuid, registry: Addr<SessionRegistry>, deps: FeedDeps) -> Self {
        SessionCore {
            id,
            user_id: Uuid::nil(),
            registry,
            gate: InOrder::new(0, deps.held_max),
            deps,
            last_heard: Instant::now(),
            write: None,
            registered: false,
            permit: None,
            token: None,
            fresh_start: None,
            resets_sent: 0,
        }
    }

    /// Holds the session's place under the caps for its life.
    pub fn hold_permit(&mut self, permit: SessionPermit) {
        self.permit = Some(permit);
    }

    /// Has `watch` close the session with 4001 when `grant`'s token expires or is revoked (from
    /// its registration on).
    pub fn watch_token(&mut self, watch: Addr<TokenWatch>, grant: TokenGrant) {
        self.token = Some((watch, grant));
    }

    pub fn has_permit(&self) -> bool {
        self.permit.is_some()
    }

    /// The watch on this session's connection (see `write_watch`).
    pub fn with_write_watch(mut self, watch: Option<Arc<WriteWatch>>) -> Self {
        self.write = watch;
        self
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    pub fn registry(&self) -> Addr<SessionRegistry> {
        self.registry.clone()
    }

    pub fn stats(&self) -> &Stats {
        &self.deps.stats
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Registers the admitted session of `user_id`, whose actor is `addr`, starting at `start`.
    /// Everything routed to it from now on is held until its first fill, which the registry
    /// asks for (a `CatchUp`) once everything routed to it is in place.
    pub fn register<A>(&mut self, user_id: Uuid, start: FeedStart, addr: &Addr<A>)
    where
        A: Actor + Handler<Deliver> + Handler<FeedSync> + Handler<Heartbeat> + Handler<Disconnect>,
        A::Context: ToEnvelope<A, Deliver>
            + ToEnvelope<A, FeedSync>
            + ToEnvelope<A, Heartbeat>
            + ToEnvelope<A, Disconnect>,
    {
        self.user_id = user_id;
        self.gate = InOrder::new(start.after, self.deps.held_max);
        self.fresh_start = (!start.resumed).then_some(start.after);
        self.gate.hold();
        // Joins its thread's hub before the registry can hand it anything.
        let hub = worker_hub::join(self.id, addr.clone().recipient(), self.write.clone());
        self.registry.do_send(Register {
            session_id: self.id,
            handle: SessionHandle::new(user_id, addr).with_write_watch(self.write.clone()),
            hub: Some(hub),
        });
        self.registered = true;
        if let Some((watch, grant)) = self.token.take() {
            watch.do_send(WatchToken {
                session_id: self.id,
                token_hash: grant.token_hash,
                expires_at: grant.expires_at,
                disconnect: addr.clone().recipient(),
            });
        }
        if start.resumed {
            self.deps.stats.count_resume();
        }
        self.deps.stats.count_connect();
    }

    /// The session's actor stopped with close code `close_code` (1006: no close frame either
    /// way): forget it everywhere. Also undoes an admission whose actor never registered.
    pub fn stopped(&mut self, close_code: Option<u16>) {
        if self.registered {
            worker_hub::leave(self.id);
            self.deps.stats.count_disconnect(close_code.unwrap_or(1006));
        }
        self.registry.do_send(Deregister {
            session_id: self.id,
        });
    }

    /// The client said something (any frame counts as a sign of life).
    pub fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// A live event: writes what the gate lets through (a fill's answer, if the gate asks for
    /// a check, comes to `me`).
    pub fn deliver(
        &mut self,
        Deliver(frame, trace): Deliver,
        me: &Recipient<Filled>,
        write: &mut dyn FnMut(Out<'_>),
    ) {
        let seq = frame.0;
        let released = self.gate.live(frame);
        // Timed only when written now, not when held for a fill or dropped as a duplicate.
        let written = released.frames.iter().any(|(at, _)| *at == seq);
        self.release(released, me, write);
        if written {
            trace.written(&self.deps.stats);
        }
    }

    /// A routing change: hold live events, or fill the gap (the answer comes to `me`).
    pub fn sync(&mut self, msg: FeedSync, me: Recipient<Filled>) {
        match msg {
            FeedSync::Hold => self.gate.hold(),
            // From the routing change's position: this session's events before it came
            // through its queue ahead of the change (one relay publishes in order).
            FeedSync::CatchUp { after } => self.fill(after.unwrap_or(self.gate.last()), &me),
        }
    }

    /// Reads the gap after `after` from the log, off the actor, trying again while the
    /// database is unreachable (and the session alive); the answer comes to `me`.
    fn fill(&mut self, after: i64, me: &Recipient<Filled>) {
        let (history, user_id, id) = (self.deps.history.clone(), self.user_id, self.id);
        let (me, resets_before) = (me.clone(), self.resets_sent);
        let fresh = self.fresh_start.take() == Some(after);
        actix_rt::spawn(async move {
            loop {
                let fill = if fresh {
                    history.fill_fresh(user_id, after).await
                } else {
                    history.fill(user_id, after).await
                };
                match fill {
                    Ok(fill) => {
                        return me.do_send(Filled {
                            after,
                            resets_before,
                            fill,
                        })
                    }
                    Err(error) => log::warn!(
                        "session {id}: filling its gap after {after} failed ({error}); retrying"
                    ),
                }
                tokio::time::sleep(FILL_RETRY).await;
                if !me.connected() {
                    return;
                }
            }
        });
    }

    /// A fill's answer: writes the gap and what was held meanwhile, or resets the client.
    pub fn filled(&mut self, msg: Filled, me: &Recipient<Filled>, write: &mut dyn FnMut(Out<'_>)) {
        let frames = match msg.fill {
            Fill::Frames(frames) => frames,
            Fill::Reset(_) if self.resets_sent != msg.resets_before => Vec::new(),
            Fill::Reset(head) => {
                log::info!(
                    "session {}: the gap after {} cannot be filled (beyond the history kept, or \
                     from a history the database lost); resetting it to {head}",
                    self.id,
                    msg.after
                );
                // Then release what was held, as after any fill.
                self.reset(head, write);
                Vec::new()
            }
        };
        match self.gate.filled(frames) {
            Some(released) => self.release(released, me, write),
            None => {
                // It held more than it may while the fill ran: order can no longer be
                // promised, so the client reloads from the newest position it was sent.
                let newest = self.gate.newest();
                log::warn!(
                    "session {}: too many events arrived during a fill; resetting it to {newest}",
                    self.id
                );
                self.reset(newest, write);
            }
        }
    }

    /// Writes what the gate let through, and starts the check it asks for, if any.
    fn release(
        &mut self,
        released: Released,
        me: &Recipient<Filled>,
        write: &mut dyn FnMut(Out<'_>),
    ) {
        if released.duplicates > 0 {
            self.deps.stats.add_duplicates(released.duplicates as u64);
        }
        for (seq, text) in &released.frames {
            write(Out::Event(*seq, text));
        }
        if let Some(after) = released.check_after {
            log::info!(
                "session {}: positions jumped past {after} (a new epoch of the feed log?); \
                 checking its position",
                self.id
            );
            self.fill(after, me);
        }
    }

    /// Tells the client to reload and continue from `seq`.
    fn reset(&mut self, seq: i64, write: &mut dyn FnMut(Out<'_>)) {
        self.resets_sent += 1;
        self.deps.stats.count_reset();
        self.gate.reset_to(seq);
        write(Out::Reset(seq, &reset_frame(seq)));
    }
}
