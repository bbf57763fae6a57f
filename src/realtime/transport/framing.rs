//! `Framing`: what a WebSocket transport is, beyond the session core: how it frames what the core
//! writes ([`Out`]), how it reads its client ([`Command`]s), and what it says on a heartbeat, at
//! authentication and before closing. The JSON feed of §3 and STOMP (§4) are framings; the
//! actor that runs any of them is `ws_session::WsSession`.

use std::time::Duration;

use actix_web_actors::ws::CloseCode;
use uuid::Uuid;

use crate::realtime::session::core::Out;
use crate::realtime::session::protocol::DisconnectReason;

/// What the client's input asks of the session, in the order it asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send this message to the client.
    Reply(String),
    /// Authenticate the client (in band, as STOMP's CONNECT does) with this token, or with the
    /// one the handshake carried; then call [`Framing::connected`] or [`Framing::refused`].
    Authenticate { token: Option<String> },
    /// The client wants the feed, resuming after `since` if it says so: admit the session and
    /// register it, unless that is done already.
    Subscribe { since: Option<i64> },
    /// Close the connection with this code and reason (after the replies before it).
    Close { code: CloseCode, reason: String },
}

pub trait Framing: Unpin + 'static {
    /// The transport's name, for logs.
    const NAME: &'static str;

    /// One data message from the client.
    fn read(&mut self, data: &[u8]);

    /// The next thing the client's input asks, if any. The session stops asking while an
    /// asynchronous step (authentication, admission) runs, so later input waits for it.
    fn next_command(&mut self) -> Option<Command>;

    /// Frames what the core writes as messages for the client.
    fn frame(&mut self, out: Out<'_>, send: &mut dyn FnMut(&str));

    /// What to send as soon as the connection is open, if anything.
    fn opening(&mut self) -> Option<String> {
        None
    }

    /// In-band authentication succeeded for `user_id`: the replies to send.
    fn connected(&mut self, _user_id: Uuid) -> Vec<String> {
        Vec::new()
    }

    /// In-band authentication or admission failed: the message to send before closing.
    fn refused(&mut self, _why: &str) -> Option<String> {
        None
    }

    /// The watchdog's tick: a message to send as the transport's own heartbeat, if it has one.
    fn heartbeat(&mut self) -> Option<String> {
        None
    }

    /// The server is ending the session: a message to send before the close frame.
    fn closing(&mut self, _reason: DisconnectReason) -> Option<String> {
        None
    }

    /// How long the client may stay silent, if the transport negotiated less than
    /// `realtime.client_timeout_secs`.
    fn silence_limit(&self) -> Option<Duration> {
        None
    }
}
