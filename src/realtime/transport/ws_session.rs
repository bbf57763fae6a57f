//! `WsSession<F>`: one actor per WebSocket connection, whatever its framing `F` (the JSON feed
//! of §3, STOMP of §4). The session core (`session::core`) does the feed: registration, order,
//! fills, resets; this actor runs it on a WebSocket and adds what every WebSocket has: the
//! frame-size guard, Ping frames on each heartbeat, close codes, and the mailbox bound past which
//! the registry finds it too slow. A session is admitted either by its route before the upgrade
//! (the JSON feed) or in band (`in_band`): the client authenticates in its first frame (STOMP's CONNECT) and
//! is admitted and registered on its first SUBSCRIBE, within `realtime.client_timeout_secs`.

use actix::prelude::*;
use actix_web_actors::ws::{self, CloseCode, CloseReason};

use super::frame_guard::FrameLimit;
use super::framing::Framing;
use super::in_band::{Admission, InBandHost, Parts};
use crate::realtime::session::core::{Filled, SessionCore};
use crate::realtime::session::protocol::{Deliver, Disconnect, FeedSync, Heartbeat};

pub struct WsSession<F: Framing> {
    core: SessionCore,
    framing: F,
    admission: Admission,
    mailbox: usize,
    frame_limit: FrameLimit,
    /// An asynchronous step (authentication, admission) is under way: client input waits.
    busy: bool,
    /// The close code this session ended with, once known (sent or received).
    close_code: Option<u16>,
}

impl<F: Framing> WsSession<F> {
    /// `mailbox` bounds the events waiting for this socket (`realtime.session_mailbox`): past
    /// it the registry finds the mailbox full and closes the session as too slow.
    pub fn new(core: SessionCore, framing: F, admission: Admission, mailbox: usize) -> Self {
        WsSession {
            core,
            framing,
            admission,
            mailbox,
            frame_limit: FrameLimit::default(),
            busy: false,
            close_code: None,
        }
    }

    /// The guard in front of this session's frame codec, which says when a client frame was
    /// refused for its declared size.
    pub fn with_frame_limit(mut self, limit: FrameLimit) -> Self {
        self.frame_limit = limit;
        self
    }

    /// A client frame over `realtime.max_frame_bytes`: the framing's last word, then 1009.
    fn too_large(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if let Some(text) = self.framing.refused("frame too large") {
            ctx.text(text);
        }
        self.close(CloseCode::Size, "frame too large", ctx);
    }
}

impl<F: Framing> InBandHost for WsSession<F> {
    type Framing = F;

    fn parts(&mut self) -> Parts<'_, F> {
        Parts {
            core: &mut self.core,
            framing: &mut self.framing,
            admission: &mut self.admission,
            busy: &mut self.busy,
        }
    }

    fn send(&mut self, text: String, ctx: &mut Self::Context) {
        ctx.text(text);
    }

    fn close(&mut self, code: CloseCode, why: &str, ctx: &mut Self::Context) {
        self.close_code.get_or_insert(code.into());
        ctx.close(Some(CloseReason {
            code,
            description: Some(why.to_owned()),
        }));
        ctx.stop();
    }
}

impl<F: Framing> Actor for WsSession<F> {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
        if let Some(text) = self.framing.opening() {
            ctx.text(text);
        }
        self.start_session(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.core.stopped(self.close_code);
    }
}

impl<F: Framing> Handler<Deliver> for WsSession<F> {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let me = ctx.address().recipient();
        let (core, framing) = (&mut self.core, &mut self.framing);
        core.deliver(msg, &me, &mut |out| {
            framing.frame(out, &mut |text| ctx.text(text))
        });
    }
}

impl<F: Framing> Handler<FeedSync> for WsSession<F> {
    type Result = ();

    fn handle(&mut self, msg: FeedSync, ctx: &mut Self::Context) {
        self.core.sync(msg, ctx.address().recipient());
    }
}

impl<F: Framing> Handler<Filled> for WsSession<F> {
    type Result = ();

    fn handle(&mut self, msg: Filled, ctx: &mut Self::Context) {
        let me = ctx.address().recipient();
        let (core, framing) = (&mut self.core, &mut self.framing);
        core.filled(msg, &me, &mut |out| {
            framing.frame(out, &mut |text| ctx.text(text))
        });
    }
}

impl<F: Framing> Handler<Heartbeat> for WsSession<F> {
    type Result = MessageResult<Heartbeat>;

    fn handle(&mut self, _: Heartbeat, ctx: &mut Self::Context) -> Self::Result {
        ctx.ping(b"");
        if let Some(text) = self.framing.heartbeat() {
            ctx.text(text);
        }
        let last_heard = self.core.last_heard();
        if let Some(limit) = self.framing.silence_limit() {
            if last_heard.elapsed() > limit {
                self.close(CloseCode::Policy, "client timeout", ctx);
            }
        }
        MessageResult(last_heard)
    }
}

impl<F: Framing> Handler<Disconnect> for WsSession<F> {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        let (code, why) = msg.0.close();
        let code = CloseCode::from(code);
        if let Some(text) = self.framing.closing(msg.0) {
            ctx.text(text);
        }
        self.close(code, why, ctx);
    }
}

impl<F: Framing> StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession<F> {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let message = match item {
            Ok(message) => message,
            Err(ws::ProtocolError::Overflow) => return self.too_large(ctx),
            Err(_) if self.frame_limit.exceeded() => {
                log::info!(
                    "{} session {}: refused a frame declared above the limit",
                    F::NAME,
                    self.core.id()
                );
                return self.too_large(ctx);
            }
            Err(error) => {
                log::debug!(
                    "{} session {}: protocol error: {error}",
                    F::NAME,
                    self.core.id()
                );
                return self.close(CloseCode::Protocol, "protocol error", ctx);
            }
        };
        self.core.heard();
        match message {
            ws::Message::Ping(payload) => ctx.pong(&payload),
            ws::Message::Close(reason) => {
                // 1005: the client's close frame carried no code.
                let code = reason.as_ref().map_or(1005, |reason| reason.code.into());
                self.close_code.get_or_insert(code);
                ctx.close(reason);
                ctx.stop();
            }
            ws::Message::Text(text) => {
                self.framing.read(text.as_bytes());
                self.drain(ctx);
            }
            ws::Message::Binary(bytes) => {
                self.framing.read(&bytes);
                self.drain(ctx);
            }
            // A fragmented message: the framings read a byte stream, so its pieces are read
            // as they come.
            ws::Message::Continuation(item) => {
                let (actix_http::ws::Item::FirstText(bytes)
                | actix_http::ws::Item::FirstBinary(bytes)
                | actix_http::ws::Item::Continue(bytes)
                | actix_http::ws::Item::Last(bytes)) = item;
                self.framing.read(&bytes);
                self.drain(ctx);
            }
            ws::Message::Pong(_) | ws::Message::Nop => {}
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
