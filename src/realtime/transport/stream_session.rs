//! `StreamSession<F>`: one actor per streamed HTTP response (SSE, §5), whatever its framing `F`.
//! The session core does the feed; this actor writes what it frames into a bounded channel that
//! the response body reads. The actor runs on its own context, not inside the body, so a client
//! that stops reading cannot freeze it: its channel fills, and the session ends as too slow and
//! is released. A client that went away is noticed at the next write (the heartbeat at the
//! latest), when the channel is found closed.

use actix::prelude::*;
use actix_web::web::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::framing::Framing;
use crate::realtime::session::core::{FeedStart, Filled, SessionCore};
use crate::realtime::session::protocol::{Deliver, Disconnect, FeedSync, Heartbeat};

/// A response body that streams what a session writes into `receiver`, ending when the
/// session drops its sender.
pub fn body_of(
    receiver: mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        let bytes = receiver.recv().await?;
        Some((Ok(bytes), receiver))
    })
}

/// Close codes as the WebSocket sessions count them, so `/metrics` reads the same.
const GONE: u16 = 1001;
const TOO_SLOW: u16 = 1008;

pub struct StreamSession<F: Framing> {
    core: SessionCore,
    framing: F,
    user_id: Uuid,
    start: FeedStart,
    mailbox: usize,
    body: mpsc::Sender<Bytes>,
    close_code: Option<u16>,
}

impl<F: Framing> StreamSession<F> {
    /// A session admitted by its route for `user_id`, writing into `body` (whose bound is how
    /// far the client may fall behind before it is dropped).
    pub fn new(
        core: SessionCore,
        framing: F,
        (user_id, start): (Uuid, FeedStart),
        mailbox: usize,
        body: mpsc::Sender<Bytes>,
    ) -> Self {
        StreamSession {
            core,
            framing,
            user_id,
            start,
            mailbox,
            body,
            close_code: None,
        }
    }

    /// Queues `text` for the client; a full channel (the client stopped reading) or a closed
    /// one (it went away) ends the session.
    fn push(
        body: &mpsc::Sender<Bytes>,
        close_code: &mut Option<u16>,
        text: &str,
        ctx: &mut Context<Self>,
    ) {
        if close_code.is_some() {
            return;
        }
        match body.try_send(Bytes::copy_from_slice(text.as_bytes())) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                *close_code = Some(TOO_SLOW);
                ctx.stop();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                *close_code = Some(GONE);
                ctx.stop();
            }
        }
    }
}

impl<F: Framing> Actor for StreamSession<F> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
        self.core.register(self.user_id, self.start, &ctx.address());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if self.close_code == Some(TOO_SLOW) {
            log::info!("{} session {}: too slow, dropped", F::NAME, self.core.id());
        }
        self.core.stopped(self.close_code);
    }
}

impl<F: Framing> Handler<Deliver> for StreamSession<F> {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let me = ctx.address().recipient();
        let (core, framing) = (&mut self.core, &mut self.framing);
        let (body, close_code) = (&self.body, &mut self.close_code);
        core.deliver(msg, &me, &mut |out| {
            framing.frame(out, &mut |text| Self::push(body, close_code, text, ctx))
        });
    }
}

impl<F: Framing> Handler<FeedSync> for StreamSession<F> {
    type Result = ();

    fn handle(&mut self, msg: FeedSync, ctx: &mut Self::Context) {
        self.core.sync(msg, ctx.address().recipient());
    }
}

impl<F: Framing> Handler<Filled> for StreamSession<F> {
    type Result = ();

    fn handle(&mut self, msg: Filled, ctx: &mut Self::Context) {
        let me = ctx.address().recipient();
        let (core, framing) = (&mut self.core, &mut self.framing);
        let (body, close_code) = (&self.body, &mut self.close_code);
        core.filled(msg, &me, &mut |out| {
            framing.frame(out, &mut |text| Self::push(body, close_code, text, ctx))
        });
    }
}

impl<F: Framing> Handler<Heartbeat> for StreamSession<F> {
    type Result = MessageResult<Heartbeat>;

    fn handle(&mut self, _: Heartbeat, ctx: &mut Self::Context) -> Self::Result {
        if let Some(text) = self.framing.heartbeat() {
            Self::push(&self.body, &mut self.close_code, &text, ctx);
        }
        // The client sends nothing on a stream: it is alive while it takes what is written.
        self.core.heard();
        MessageResult(self.core.last_heard())
    }
}

impl<F: Framing> Handler<Disconnect> for StreamSession<F> {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        if let Some(text) = self.framing.closing(msg.0) {
            Self::push(&self.body, &mut self.close_code, &text, ctx);
        }
        self.close_code.get_or_insert(msg.0.close().0);
        ctx.stop();
    }
}
