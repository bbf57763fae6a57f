//! `WsSession`: one actor per WebSocket connection. It exists only for an authenticated user
//! whose events are already routed to this node. It first fills its gap from the feed log (the
//! events after the client's `since`, or after the position read at admission), then writes each
//! event it is handed as one text frame, in position order and once (`in_order`), filling again
//! from the log whenever a routing change asks it to. It answers the client's pings, tracks when
//! it last heard from the client, and closes cleanly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use uuid::Uuid;

use super::frame_guard::FrameLimit;
use crate::realtime::events::{reset_frame, Frame};
use crate::realtime::session::caps::SessionPermit;
use crate::realtime::session::history::{FeedHistory, Fill};
use crate::realtime::session::in_order::{InOrder, Released};
use crate::realtime::session::protocol::{
    Deliver, Disconnect, DisconnectReason, FeedSync, Heartbeat, SessionHandle,
};
use crate::realtime::session::registry::{Deregister, Register, SessionRegistry};
use crate::realtime::session::write_watch::WriteWatch;
use crate::realtime::stats::Stats;
use crate::store::StoreError;

/// How long a fill that failed (PostgreSQL unreachable) waits before it is tried again; live
/// events stay held meanwhile.
const FILL_RETRY: Duration = Duration::from_secs(1);

/// Where a session's feed starts.
pub struct FeedStart {
    pub history: FeedHistory,
    pub stats: Stats,
    /// The client has everything up to here: its `since`, or the position read at admission.
    pub after: i64,
    /// Whether `after` is the client's own (a resume).
    pub resumed: bool,
    /// Live events a session may hold while a fill is under way.
    pub held_max: usize,
}

pub struct WsSession {
    id: Uuid,
    user_id: Uuid,
    registry: Addr<SessionRegistry>,
    mailbox: usize,
    last_heard: Instant,
    frame_limit: FrameLimit,
    write: Option<Arc<WriteWatch>>,
    history: FeedHistory,
    stats: Stats,
    gate: InOrder,
    /// Whether the client resumed (counted once, at start).
    resumed: bool,
    /// The close code this session ended with, once known (sent or received).
    close_code: Option<u16>,
    /// Its place under the session caps, given back when the actor is dropped.
    _permit: Option<SessionPermit>,
    /// How many `feed.reset` frames it has sent: a fill that answers "reset" after another
    /// reset went out meanwhile adds nothing (the client reloads from a later position already).
    resets_sent: u64,
}

impl WsSession {
    /// `mailbox` bounds the events waiting for this socket (`realtime.session_mailbox`): past
    /// it the registry finds the mailbox full and closes the session as too slow.
    pub fn new(
        (id, user_id): (Uuid, Uuid),
        registry: Addr<SessionRegistry>,
        mailbox: usize,
        feed: FeedStart,
    ) -> Self {
        WsSession {
            id,
            user_id,
            registry,
            mailbox,
            last_heard: Instant::now(),
            frame_limit: FrameLimit::default(),
            write: None,
            gate: InOrder::new(feed.after, feed.held_max),
            history: feed.history,
            stats: feed.stats,
            resumed: feed.resumed,
            close_code: None,
            _permit: None,
            resets_sent: 0,
        }
    }

    /// The session's place under the caps (see `session::caps`), held for its life.
    pub fn with_permit(mut self, permit: SessionPermit) -> Self {
        self._permit = Some(permit);
        self
    }

    /// The guard in front of this session's frame codec, which says when a client frame was
    /// refused for its declared size.
    pub fn with_frame_limit(mut self, limit: FrameLimit) -> Self {
        self.frame_limit = limit;
        self
    }

    /// The watch on this session's connection (see `write_watch`).
    pub fn with_write_watch(mut self, watch: Arc<WriteWatch>) -> Self {
        self.write = Some(watch);
        self
    }

    fn write(&self, frames: Vec<Frame>, duplicates: usize, ctx: &mut ws::WebsocketContext<Self>) {
        if duplicates > 0 {
            self.stats.add_duplicates(duplicates as u64);
        }
        for (_, text) in frames {
            ctx.text(&*text);
        }
    }

    /// Reads the gap after `after` from the log, off the actor; the answer comes back as
    /// [`Filled`].
    fn fill(&self, after: i64, ctx: &mut ws::WebsocketContext<Self>) {
        let (history, user_id, me) = (self.history.clone(), self.user_id, ctx.address());
        let resets_before = self.resets_sent;
        actix_rt::spawn(async move {
            let outcome = history.fill(user_id, after).await;
            me.do_send(Filled {
                after,
                outcome,
                resets_before,
            });
        });
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: CloseCode, why: &str) {
        self.close_code.get_or_insert(code.into());
        ctx.close(Some(CloseReason {
            code,
            description: Some(why.to_owned()),
        }));
        ctx.stop();
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
        // Everything routed here from now on is held until the first fill is in.
        self.gate.hold();
        self.registry.do_send(Register {
            session_id: self.id,
            handle: SessionHandle::new(self.user_id, &ctx.address())
                .with_write_watch(self.write.clone()),
        });
        // The registry asks for the first fill (a `CatchUp` from the start position) once
        // everything routed to this session is in place.
        if self.resumed {
            self.stats.count_resume();
        }
        self.stats.count_connect();
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // 1006: the connection ended without a close frame either way.
        self.stats.count_disconnect(self.close_code.unwrap_or(1006));
        self.registry.do_send(Deregister {
            session_id: self.id,
        });
    }
}

impl Handler<Deliver> for WsSession {
    type Result = ();

    fn handle(&mut self, Deliver(frame, trace): Deliver, ctx: &mut Self::Context) {
        let seq = frame.0;
        let released = self.gate.live(frame);
        // Timed only when written now, not when held for a fill or dropped as a duplicate.
        let written = released.frames.iter().any(|(at, _)| *at == seq);
        self.write_released(released, ctx);
        if written {
            trace.written(&self.stats);
        }
    }
}

impl Handler<FeedSync> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: FeedSync, ctx: &mut Self::Context) {
        match msg {
            FeedSync::Hold => self.gate.hold(),
            // From the routing change's position: this session's events before it came
            // through its queue ahead of the change (one relay publishes in order).
            FeedSync::CatchUp { after } => self.fill(after.unwrap_or(self.gate.last()), ctx),
        }
    }
}

/// A fill's answer.
#[derive(Message)]
#[rtype(result = "()")]
struct Filled {
    after: i64,
    resets_before: u64,
    outcome: Result<Fill, StoreError>,
}

impl Handler<Filled> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Filled, ctx: &mut Self::Context) {
        let frames = match msg.outcome {
            Ok(Fill::Frames(frames)) => frames,
            Ok(Fill::Reset(_)) if self.resets_sent != msg.resets_before => Vec::new(),
            Ok(Fill::Reset(head)) => {
                log::info!(
                    "session {}: the gap after {} cannot be filled (beyond the history kept, or \
                     from a history the database lost); resetting it to {head}",
                    self.id,
                    msg.after
                );
                self.reset(head, ctx);
                Vec::new()
            }
            Err(error) => {
                log::warn!(
                    "session {}: filling its gap after {} failed ({error}); retrying",
                    self.id,
                    msg.after
                );
                let after = msg.after;
                ctx.run_later(FILL_RETRY, move |session, ctx| session.fill(after, ctx));
                return;
            }
        };
        match self.gate.filled(frames) {
            Some(released) => self.write_released(released, ctx),
            None => {
                // It held more than it may while the fill ran: order can no longer be
                // promised, so the client reloads from the newest position it was sent.
                let newest = self.gate.newest();
                log::warn!(
                    "session {}: too many events arrived during a fill; resetting it to {newest}",
                    self.id
                );
                self.reset(newest, ctx);
            }
        }
    }
}

impl WsSession {
    /// Writes what the gate let through, and starts the check it asks for, if any.
    fn write_released(&mut self, released: Released, ctx: &mut ws::WebsocketContext<Self>) {
        self.write(released.frames, released.duplicates, ctx);
        if let Some(after) = released.check_after {
            log::info!(
                "session {}: positions jumped past {after} (a new epoch of the feed log?); \
                 checking its position",
                self.id
            );
            self.fill(after, ctx);
        }
    }

    /// Tells the client to reload and continue from `seq`.
    fn reset(&mut self, seq: i64, ctx: &mut ws::WebsocketContext<Self>) {
        self.resets_sent += 1;
        self.stats.count_reset();
        self.gate.reset_to(seq);
        ctx.text(reset_frame(seq));
    }
}

impl Handler<Heartbeat> for WsSession {
    type Result = MessageResult<Heartbeat>;

    fn handle(&mut self, _: Heartbeat, ctx: &mut Self::Context) -> Self::Result {
        ctx.ping(b"");
        MessageResult(self.last_heard)
    }
}

impl Handler<Disconnect> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        let (code, why) = match msg.0 {
            DisconnectReason::ClientTimeout => (CloseCode::Policy, "client timeout"),
            DisconnectReason::ServerShutdown => (CloseCode::Away, "server shutting down"),
            DisconnectReason::BrokerLost => (CloseCode::Again, "event broker unavailable"),
            DisconnectReason::TooSlow => (CloseCode::Policy, "too slow: reconnect and reload"),
            DisconnectReason::Unauthorized => (
                CloseCode::Other(4001),
                "token expired or revoked: log in again",
            ),
        };
        self.close(ctx, code, why);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let message = match item {
            Ok(message) => message,
            Err(ws::ProtocolError::Overflow) => {
                return self.close(ctx, CloseCode::Size, "frame too large");
            }
            Err(_) if self.frame_limit.exceeded() => {
                log::info!(
                    "session {}: refused a frame declared above the limit",
                    self.id
                );
                return self.close(ctx, CloseCode::Size, "frame too large");
            }
            Err(error) => {
                log::debug!("session {}: protocol error: {error}", self.id);
                return self.close(ctx, CloseCode::Protocol, "protocol error");
            }
        };
        self.last_heard = Instant::now();
        match message {
            ws::Message::Ping(payload) => ctx.pong(&payload),
            ws::Message::Close(reason) => {
                // 1005: the client's close frame carried no code.
                let code = reason.as_ref().map_or(1005, |reason| reason.code.into());
                self.close_code.get_or_insert(code);
                ctx.close(reason);
                ctx.stop();
            }
            // The feed is one-way: client data frames count as signs of life and are dropped.
            ws::Message::Pong(_)
            | ws::Message::Text(_)
            | ws::Message::Binary(_)
            | ws::Message::Continuation(_)
            | ws::Message::Nop => {}
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
