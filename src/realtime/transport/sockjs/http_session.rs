//! `SockJsSession`: one actor per SockJS session carried by HTTP requests (`xhr_streaming`,
//! `xhr` polling with `xhr_send`, `eventsource`), speaking STOMP inside. Such a session outlives
//! each request: what it writes waits in a bounded outbox while no request is attached, the
//! next receiving request takes it (one at a time: a second gets `c[2010,...]`), and a session
//! with no request attached for [`DISCONNECT_DELAY`] ends and is released. The STOMP session
//! itself (authentication, admission, the feed) is the same as on a WebSocket: `in_band` and
//! the session core.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web::Bytes;
use actix_web_actors::ws::CloseCode;
use tokio::sync::mpsc;

use super::frames::{self, Refused};
use super::sessions::SockJsSessions;
use crate::realtime::session::core::{Filled, SessionCore};
use crate::realtime::session::protocol::{Deliver, Disconnect, FeedSync, Heartbeat};
use crate::realtime::transport::framing::Framing;
use crate::realtime::transport::in_band::{Admission, InBandHost, Parts};
use crate::realtime::transport::stomp::framing::Stomp;

/// How long a session may have no receiving request before it ends (the protocol's 5 s).
pub const DISCONNECT_DELAY: Duration = Duration::from_secs(5);
/// How often an attached receiver gets `h` when nothing else is written.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(25);
/// A streaming response ends after this many bytes, so the client's memory stays small; the
/// client then opens the next one.
pub const STREAM_LIMIT: usize = 128 * 1024;
/// Close codes as the WebSocket sessions count them, so `/metrics` reads the same.
const GONE: u16 = 1001;
const TOO_SLOW: u16 = 1008;

/// How a receiving request takes the session's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiving {
    /// `xhr_streaming`: frames, each ending in a newline, until [`STREAM_LIMIT`].
    Streaming,
    /// `xhr`: one answer (a frame and a newline), then the request ends.
    Polling,
    /// `eventsource`: each frame as a `data:` event.
    EventSource,
}

/// A receiving request attaches its response body.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub kind: Receiving,
    pub body: mpsc::Sender<Bytes>,
}

/// An `xhr_send` request's body.
#[derive(Message)]
#[rtype(result = "Result<(), Refused>")]
pub struct Incoming(pub Bytes);

struct Receiver {
    kind: Receiving,
    body: mpsc::Sender<Bytes>,
    sent: usize,
    last_write: Instant,
}

pub struct SockJsSession {
    key: String,
    sessions: SockJsSessions<SockJsSession>,
    core: SessionCore,
    framing: Stomp,
    admission: Admission,
    busy: bool,
    mailbox: usize,
    /// Messages (STOMP frames) waiting for a receiver, and how many may wait.
    outbox: VecDeque<String>,
    outbox_max: usize,
    receiver: Option<Receiver>,
    opened: bool,
    detached_since: Option<Instant>,
    /// The close frame, once the session ended: the next receiver gets it.
    closing: Option<String>,
    close_code: Option<u16>,
}

impl SockJsSession {
    pub fn new(
        (key, sessions): (String, SockJsSessions<SockJsSession>),
        core: SessionCore,
        framing: Stomp,
        admission: Admission,
        (mailbox, outbox_max): (usize, usize),
    ) -> Self {
        SockJsSession {
            key,
            sessions,
            core,
            framing,
            admission,
            busy: false,
            mailbox,
            outbox: VecDeque::new(),
            outbox_max,
            receiver: None,
            opened: false,
            detached_since: Some(Instant::now()),
            closing: None,
            close_code: None,
        }
    }

    /// Writes one SockJS frame to the attached receiver, if any; false if there is none now.
    fn write_frame(&mut self, frame: &str, ctx: &mut Context<Self>) -> bool {
        let Some(receiver) = &mut self.receiver else {
            return false;
        };
        let bytes = match receiver.kind {
            Receiving::Streaming | Receiving::Polling => format!("{frame}\n"),
            Receiving::EventSource => format!("data: {frame}\r\n\r\n"),
        };
        let length = bytes.len();
        match receiver.body.try_send(Bytes::from(bytes)) {
            Ok(()) => {
                receiver.sent += length;
                receiver.last_write = Instant::now();
                if receiver.kind == Receiving::Polling || receiver.sent > STREAM_LIMIT {
                    self.detach();
                }
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close_code = Some(TOO_SLOW);
                ctx.stop();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.detach();
                false
            }
        }
    }

    fn detach(&mut self) {
        if self.receiver.take().is_some() {
            self.detached_since = Some(Instant::now());
        }
    }

    /// Hands what waits in the outbox to the receiver, as one `a[...]` frame.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.receiver.is_none() || self.outbox.is_empty() {
            return;
        }
        let frame = frames::messages(self.outbox.iter().map(String::as_str));
        if self.write_frame(&frame, ctx) {
            self.outbox.clear();
        }
    }

    /// Queues a message (one STOMP frame) for the client.
    fn queue(&mut self, text: String, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        if self.outbox.len() >= self.outbox_max {
            log::info!("sockjs session {}: too slow, dropped", self.core.id());
            self.close_code = Some(TOO_SLOW);
            return ctx.stop();
        }
        self.outbox.push_back(text);
        self.flush(ctx);
    }

    /// Once a second: notice a receiver that went away, keep an idle one alive with `h`, and
    /// end a session nobody has come back for within the disconnect delay.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.receiver.as_ref().is_some_and(|r| r.body.is_closed()) {
            self.detach();
        }
        if self
            .receiver
            .as_ref()
            .is_some_and(|r| r.last_write.elapsed() >= HEARTBEAT_EVERY)
        {
            self.write_frame(frames::HEARTBEAT, ctx);
        }
        if self.receiver.is_some() {
            self.core.heard();
        }
        if self
            .detached_since
            .is_some_and(|at| at.elapsed() >= DISCONNECT_DELAY)
        {
            self.close_code.get_or_insert(GONE);
            ctx.stop();
        }
    }
}

impl InBandHost for SockJsSession {
    type Framing = Stomp;

    fn parts(&mut self) -> Parts<'_, Stomp> {
        Parts {
            core: &mut self.core,
            framing: &mut self.framing,
            admission: &mut self.admission,
            busy: &mut self.busy,
        }
    }

    fn send(&mut self, text: String, ctx: &mut Self::Context) {
        self.queue(text, ctx);
    }

    fn close(&mut self, code: CloseCode, reason: &str, ctx: &mut Self::Context) {
        self.close_code.get_or_insert(code.into());
        self.flush(ctx);
        let frame = frames::close((frames::GO_AWAY.0, reason));
        if self.write_frame(&frame, ctx) {
            self.detach();
            ctx.stop();
        } else {
            // Said to the next receiver; the disconnect delay ends it if none comes.
            self.closing = Some(frame);
        }
    }
}

impl Actor for SockJsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
        ctx.run_interval(Duration::from_secs(1), |session, ctx| session.tick(ctx));
        self.start_session(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.sessions.remove(&self.key);
        self.core.stopped(self.close_code);
    }
}

impl Handler<Attach> for SockJsSession {
    type Result = ();

    fn handle(&mut self, msg: Attach, ctx: &mut Self::Context) {
        if self.receiver.as_ref().is_some_and(|r| !r.body.is_closed()) {
            let frame = frames::close(frames::ANOTHER_CONNECTION);
            let _ = msg.body.try_send(Bytes::from(match msg.kind {
                Receiving::EventSource => format!("data: {frame}\r\n\r\n"),
                _ => format!("{frame}\n"),
            }));
            return;
        }
        self.receiver = Some(Receiver {
            kind: msg.kind,
            body: msg.body,
            sent: 0,
            last_write: Instant::now(),
        });
        self.detached_since = None;
        self.core.heard();
        if !self.opened {
            self.opened = true;
            self.write_frame(frames::OPEN, ctx);
            return;
        }
        if let Some(frame) = self.closing.take() {
            self.write_frame(&frame, ctx);
            self.detach();
            return ctx.stop();
        }
        self.flush(ctx);
    }
}

impl Handler<Incoming> for SockJsSession {
    type Result = Result<(), Refused>;

    fn handle(&mut self, Incoming(body): Incoming, ctx: &mut Self::Context) -> Self::Result {
        let messages = frames::client_messages(&body)?;
        self.core.heard();
        for message in messages {
            self.framing.read(message.as_bytes());
        }
        self.drain(ctx);
        Ok(())
    }
}

impl Handler<Deliver> for SockJsSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let me = ctx.address().recipient();
        let mut texts = Vec::new();
        let (core, framing) = (&mut self.core, &mut self.framing);
        core.deliver(msg, &me, &mut |out| {
            framing.frame(out, &mut |t| texts.push(t.to_owned()))
        });
        for text in texts {
            self.queue(text, ctx);
        }
    }
}

impl Handler<FeedSync> for SockJsSession {
    type Result = ();

    fn handle(&mut self, msg: FeedSync, ctx: &mut Self::Context) {
        self.core.sync(msg, ctx.address().recipient());
    }
}

impl Handler<Filled> for SockJsSession {
    type Result = ();

    fn handle(&mut self, msg: Filled, ctx: &mut Self::Context) {
        let me = ctx.address().recipient();
        let mut texts = Vec::new();
        let (core, framing) = (&mut self.core, &mut self.framing);
        core.filled(msg, &me, &mut |out| {
            framing.frame(out, &mut |t| texts.push(t.to_owned()))
        });
        for text in texts {
            self.queue(text, ctx);
        }
    }
}

impl Handler<Heartbeat> for SockJsSession {
    type Result = MessageResult<Heartbeat>;

    fn handle(&mut self, _: Heartbeat, ctx: &mut Self::Context) -> Self::Result {
        if let Some(text) = self.framing.heartbeat() {
            self.queue(text, ctx);
        }
        MessageResult(self.core.last_heard())
    }
}

impl Handler<Disconnect> for SockJsSession {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        if let Some(text) = self.framing.closing(msg.0) {
            self.queue(text, ctx);
        }
        let (code, why) = msg.0.close();
        let code = CloseCode::from(code);
        self.close(code, why, ctx);
    }
}
