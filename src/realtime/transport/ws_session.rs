//! `WsSession<F>`: one actor per WebSocket connection, whatever its framing `F` (the JSON feed
//! of §3, STOMP of §4). The session core (`session::core`) does the feed: registration, order,
//! fills, resets; this actor runs it on a WebSocket and adds what every WebSocket has: the
//! frame-size guard, Ping frames on each heartbeat, close codes, and the mailbox bound past which
//! the registry finds it too slow. A session is admitted either by its route before the upgrade
//! (the JSON feed) or in band: the client authenticates in its first frame (STOMP's CONNECT) and
//! is admitted and registered on its first SUBSCRIBE, within `realtime.client_timeout_secs`.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;
use actix_web_actors::ws::{self, CloseCode, CloseReason};
use uuid::Uuid;

use super::frame_guard::FrameLimit;
use super::framing::{Command, Framing};
use crate::realtime::session::admission;
use crate::realtime::session::core::{FeedStart, Filled, SessionCore};
use crate::realtime::session::protocol::{
    Deliver, Disconnect, DisconnectReason, FeedSync, Heartbeat,
};
use crate::store::DbPool;

/// Checks a token in band: the user it belongs to, or why not (said to the client).
pub type Authenticator = Rc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<Uuid, String>>>>>;

/// How a session gets admitted.
pub enum Admission {
    /// Its route admitted it before the upgrade.
    Done { user_id: Uuid, start: FeedStart },
    /// Its client authenticates in band, then subscribes.
    InBand(InBand),
}

/// What an in-band admission needs.
pub struct InBand {
    pub pool: DbPool,
    pub authenticate: Authenticator,
    /// The handshake's token (`?token=` or `Authorization`), if any.
    pub token: Option<String>,
    /// The handshake's resume position (`?since=` or `Last-Event-ID`), if any.
    pub since: Option<i64>,
    /// How long the client has to authenticate and subscribe.
    pub deadline: Duration,
    /// Set once authenticated.
    pub user_id: Option<Uuid>,
}

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

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: CloseCode, why: &str) {
        self.close_code.get_or_insert(code.into());
        ctx.close(Some(CloseReason {
            code,
            description: Some(why.to_owned()),
        }));
        ctx.stop();
    }

    /// A client frame over `realtime.max_frame_bytes`: the framing's last word, then 1009.
    fn too_large(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if let Some(text) = self.framing.refused("frame too large") {
            ctx.text(text);
        }
        self.close(ctx, CloseCode::Size, "frame too large");
    }

    /// Refuses an in-band client: the framing's last word, then a close.
    fn refuse(&mut self, why: &str, ctx: &mut ws::WebsocketContext<Self>) {
        log::info!("{} session {}: refused: {why}", F::NAME, self.core.id());
        if let Some(text) = self.framing.refused(why) {
            ctx.text(text);
        }
        self.close(ctx, CloseCode::Policy, why);
    }

    /// Runs what the client's input asks, in order, until an asynchronous step starts.
    fn drain(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        while !self.busy {
            let Some(command) = self.framing.next_command() else {
                return;
            };
            match command {
                Command::Reply(text) => ctx.text(text),
                Command::Close { code, reason } => return self.close(ctx, code, &reason),
                Command::Authenticate { token } => self.authenticate(token, ctx),
                Command::Subscribe { since } => self.subscribe(since, ctx),
            }
        }
    }

    fn authenticate(&mut self, token: Option<String>, ctx: &mut ws::WebsocketContext<Self>) {
        let Admission::InBand(in_band) = &self.admission else {
            return;
        };
        let Some(token) = token.or_else(|| in_band.token.clone()) else {
            return self.refuse("no token: send one in CONNECT or on the URL", ctx);
        };
        let check = (in_band.authenticate)(token);
        self.busy = true;
        ctx.wait(check.into_actor(self).map(|outcome, session, ctx| {
            session.busy = false;
            match outcome {
                Ok(user_id) => {
                    if let Admission::InBand(in_band) = &mut session.admission {
                        in_band.user_id = Some(user_id);
                    }
                    for reply in session.framing.connected(user_id) {
                        ctx.text(reply);
                    }
                    session.drain(ctx);
                }
                Err(why) => session.refuse(&why, ctx),
            }
        }));
    }

    fn subscribe(&mut self, since: Option<i64>, ctx: &mut ws::WebsocketContext<Self>) {
        if self.core.is_registered() {
            return;
        }
        let Admission::InBand(in_band) = &self.admission else {
            return;
        };
        let Some(user_id) = in_band.user_id else {
            return self.refuse("SUBSCRIBE before CONNECT", ctx);
        };
        let since = since.or(in_band.since);
        let (registry, pool, id) = (self.core.registry(), in_band.pool.clone(), self.core.id());
        let admit = async move { admission::admit(&registry, &pool, id, user_id).await };
        self.busy = true;
        ctx.wait(admit.into_actor(self).map(move |outcome, session, ctx| {
            session.busy = false;
            match outcome {
                Ok(head) => {
                    let start = FeedStart {
                        after: since.unwrap_or(head),
                        resumed: since.is_some(),
                    };
                    session.core.register(user_id, start, &ctx.address());
                    session.drain(ctx);
                }
                Err(error) => {
                    log::warn!("{} session {id}: admission failed: {error}", F::NAME);
                    session.refuse("the feed is unavailable right now; try again", ctx);
                }
            }
        }));
    }
}

impl<F: Framing> Actor for WsSession<F> {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
        match &self.admission {
            Admission::Done { user_id, start } => {
                let (user_id, start) = (*user_id, *start);
                self.core.register(user_id, start, &ctx.address());
            }
            Admission::InBand(in_band) => {
                ctx.run_later(in_band.deadline, |session, ctx| {
                    if !session.core.is_registered() {
                        session.refuse("no CONNECT and SUBSCRIBE in time", ctx);
                    }
                });
            }
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.core.stopped(self.close_code);
    }
}

impl<F: Framing> Handler<Deliver> for WsSession<F> {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let (core, framing) = (&mut self.core, &mut self.framing);
        core.deliver(msg, &mut |out| {
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
        let (core, framing) = (&mut self.core, &mut self.framing);
        core.filled(msg, &mut |out| {
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
                self.close(ctx, CloseCode::Policy, "client timeout");
            }
        }
        MessageResult(last_heard)
    }
}

impl<F: Framing> Handler<Disconnect> for WsSession<F> {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        let (code, why) = match msg.0 {
            DisconnectReason::ClientTimeout => (CloseCode::Policy, "client timeout"),
            DisconnectReason::ServerShutdown => (CloseCode::Away, "server shutting down"),
            DisconnectReason::BrokerLost => (CloseCode::Again, "event broker unavailable"),
            DisconnectReason::TooSlow => (CloseCode::Policy, "too slow: reconnect and reload"),
        };
        if let Some(text) = self.framing.closing(msg.0) {
            ctx.text(text);
        }
        self.close(ctx, code, why);
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
                return self.close(ctx, CloseCode::Protocol, "protocol error");
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
