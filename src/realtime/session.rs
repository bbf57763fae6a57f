//! `WsSession`: one actor per WebSocket connection. It exists only for an authenticated user
//! whose events are already routed to this node, writes each event it is handed as one text
//! frame, answers the client's pings, tracks when it last heard from the client, and closes
//! cleanly.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use uuid::Uuid;

use super::frame_guard::FrameLimit;
use super::registry::{Deregister, Register, SessionRegistry};
use super::session_protocol::{Deliver, Disconnect, DisconnectReason, Heartbeat, SessionHandle};
use super::write_watch::WriteWatch;

pub struct WsSession {
    id: Uuid,
    user_id: Uuid,
    registry: Addr<SessionRegistry>,
    mailbox: usize,
    last_heard: Instant,
    frame_limit: FrameLimit,
    write: Option<Arc<WriteWatch>>,
}

impl WsSession {
    /// `mailbox` bounds the events waiting for this socket (`realtime.session_mailbox`): past
    /// it the registry finds the mailbox full and closes the session as too slow.
    pub fn new(id: Uuid, user_id: Uuid, registry: Addr<SessionRegistry>, mailbox: usize) -> Self {
        WsSession {
            id,
            user_id,
            registry,
            mailbox,
            last_heard: Instant::now(),
            frame_limit: FrameLimit::default(),
            write: None,
        }
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

    fn close(&self, ctx: &mut ws::WebsocketContext<Self>, code: CloseCode, why: &str) {
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
        self.registry.do_send(Register {
            session_id: self.id,
            handle: SessionHandle::new(self.user_id, &ctx.address())
                .with_write_watch(self.write.clone()),
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.registry.do_send(Deregister {
            session_id: self.id,
        });
    }
}

impl Handler<Deliver> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        ctx.text(&*msg.0);
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
