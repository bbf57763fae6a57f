//! `Stomp`: the feed as STOMP 1.0/1.1/1.2 frames (§4). CONNECT (or STOMP) negotiates the version
//! and heart-beats and carries the token; SUBSCRIBE to one of the user's own feed destinations
//! starts the feed (resuming after its `since`); each feed event is a MESSAGE to every
//! subscription. RECEIPT answers any frame that asks, ACK/NACK are checked against what was
//! sent, and everything else a read-only feed cannot do is an ERROR, then a close.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web_actors::ws::CloseCode;
use uuid::Uuid;

use super::codec::{encode, CodecError, Decoded, Decoder, Frame, Version};
use crate::realtime::session::core::Out;
use crate::realtime::session::protocol::DisconnectReason;
use crate::realtime::transport::framing::{Command, Framing};

/// Headers a client frame may carry; stomp.js sends fewer than ten.
pub const MAX_HEADERS: usize = 64;
/// Subscriptions one connection may hold: a feed needs one.
pub const MAX_SUBSCRIPTIONS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckMode {
    Auto,
    Client,
    ClientIndividual,
}

#[derive(Debug)]
struct Subscription {
    id: String,
    destination: String,
    ack: AckMode,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    AwaitConnect,
    Authenticating,
    Connected,
    Closed,
}

/// What the server is configured with, for the CONNECTED frame and the destinations.
#[derive(Debug, Clone)]
pub struct StompSettings {
    pub max_frame: usize,
    /// The server's heart-beat: how often the watchdog ticks.
    pub heartbeat: Duration,
    /// `realtime.exchange`, for `/exchange/<exchange>/<key>` destinations.
    pub exchange: String,
    /// The versions the WebSocket subprotocol allows (all three when none was chosen).
    pub versions: Vec<Version>,
}

pub struct Stomp {
    settings: StompSettings,
    decoder: Decoder,
    version: Version,
    state: State,
    queue: VecDeque<Command>,
    user_id: Option<Uuid>,
    subscriptions: Vec<Subscription>,
    /// Whether the server sends heart-beats (an EOL on each watchdog tick).
    sends_heartbeats: bool,
    /// Twice the negotiated client heart-beat interval, if any.
    silence_limit: Option<Duration>,
    /// The receipt CONNECT asked for, answered with CONNECTED.
    connect_receipt: Option<String>,
    /// The positions sent, for ACK/NACK: the first and the last.
    sent: Option<(i64, i64)>,
}

impl Stomp {
    pub fn new(settings: StompSettings) -> Stomp {
        Stomp {
            decoder: Decoder::new(settings.max_frame, MAX_HEADERS),
            settings,
            version: Version::V10,
            state: State::AwaitConnect,
            queue: VecDeque::new(),
            user_id: None,
            subscriptions: Vec::new(),
            sends_heartbeats: false,
            silence_limit: None,
            connect_receipt: None,
            sent: None,
        }
    }

    fn reply(&mut self, frame: &Frame) {
        self.queue
            .push_back(Command::Reply(encode(frame, self.version)));
    }

    fn receipt(&mut self, frame: &Frame) {
        if let Some(id) = frame.header("receipt") {
            let receipt = Frame::new("RECEIPT").with("receipt-id", id);
            self.reply(&receipt);
        }
    }

    /// An ERROR frame, then the close: nothing the client sends afterwards is read.
    fn fail(&mut self, message: &str, about: Option<&Frame>) {
        let mut error = Frame::new("ERROR")
            .with("message", message)
            .with("content-type", "text/plain");
        if let Some(id) = about.and_then(|frame| frame.header("receipt")) {
            error = error.with("receipt-id", id);
        }
        error.body = message.as_bytes().to_vec();
        let length = error.body.len().to_string();
        error = error.with("content-length", &length);
        self.reply(&error);
        self.queue.push_back(Command::Close {
            code: CloseCode::Policy,
            reason: "STOMP error".to_owned(),
        });
        self.state = State::Closed;
    }

    fn handle(&mut self, frame: Frame) {
        match (&self.state, frame.command.as_str()) {
            (State::AwaitConnect, "CONNECT" | "STOMP") => self.connect(frame),
            (State::AwaitConnect, _) => self.fail("the first frame must be CONNECT", Some(&frame)),
            (State::Connected, "SUBSCRIBE") => self.subscribe(frame),
            (State::Connected, "UNSUBSCRIBE") => self.unsubscribe(frame),
            (State::Connected, "ACK" | "NACK") => self.ack(frame),
            (State::Connected, "BEGIN" | "COMMIT" | "ABORT") => self.receipt(&frame),
            (State::Connected, "DISCONNECT") => {
                self.receipt(&frame);
                self.queue.push_back(Command::Close {
                    code: CloseCode::Normal,
                    reason: "DISCONNECT".to_owned(),
                });
                self.state = State::Closed;
            }
            (State::Connected, "SEND") => self.fail(
                "the feed is read-only: write posts with POST /post/create",
                Some(&frame),
            ),
            (State::Connected, "CONNECT" | "STOMP") => self.fail("already connected", Some(&frame)),
            (State::Connected, _) => self.fail("unknown command", Some(&frame)),
            (State::Authenticating | State::Closed, _) => {}
        }
    }

    fn connect(&mut self, frame: Frame) {
        let offered: Vec<Version> = match frame.header("accept-version") {
            Some(list) => list.split(',').filter_map(Version::parse).collect(),
            None => vec![Version::V10],
        };
        let Some(version) = offered
            .into_iter()
            .filter(|version| self.settings.versions.contains(version))
            .max()
        else {
            let supported = self.settings.versions.iter().map(|v| v.as_str());
            let supported: Vec<&str> = supported.collect();
            let message = format!("supported versions are {}", supported.join(","));
            let error = Frame::new("ERROR")
                .with("version", &supported.join(","))
                .with("message", &message);
            self.reply(&error);
            self.queue.push_back(Command::Close {
                code: CloseCode::Protocol,
                reason: "no common STOMP version".to_owned(),
            });
            self.state = State::Closed;
            return;
        };
        self.version = version;
        self.decoder.set_version(version);
        if version >= Version::V11 {
            let (cx, cy) = frame
                .header("heart-beat")
                .and_then(parse_heart_beat)
                .unwrap_or((0, 0));
            let ours = self.heartbeat_ms();
            self.sends_heartbeats = cy > 0;
            self.silence_limit = (cx > 0).then(|| Duration::from_millis(2 * cx.max(ours)));
        }
        self.connect_receipt = frame.header("receipt").map(str::to_owned);
        self.state = State::Authenticating;
        self.queue.push_back(Command::Authenticate {
            token: token_of(&frame),
        });
    }

    fn heartbeat_ms(&self) -> u64 {
        u64::try_from(self.settings.heartbeat.as_millis()).unwrap_or(u64::MAX / 4)
    }

    fn subscribe(&mut self, frame: Frame) {
        let Some(destination) = frame.header("destination").map(str::to_owned) else {
            return self.fail("SUBSCRIBE needs a destination", Some(&frame));
        };
        // 1.0 makes the id optional; stomp.js always sends one.
        let id = frame.header("id").unwrap_or("0").to_owned();
        let Some(user_id) = self.user_id else {
            return self.fail("not connected", Some(&frame));
        };
        if !is_own_feed(&destination, user_id, &self.settings.exchange) {
            return self.fail(
                "no such destination: subscribe to /user/queue/feed (your own feed)",
                Some(&frame),
            );
        }
        if self.subscriptions.iter().any(|sub| sub.id == id) {
            return self.fail("a subscription with that id exists", Some(&frame));
        }
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return self.fail("too many subscriptions on one connection", Some(&frame));
        }
        let ack = match frame.header("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" => AckMode::ClientIndividual,
            _ => {
                return self.fail(
                    "ack must be auto, client or client-individual",
                    Some(&frame),
                )
            }
        };
        let since = match frame.header("since") {
            Some(text) => match text.trim().parse::<i64>() {
                Ok(position) if position >= 0 => Some(position),
                _ => return self.fail("since must be a feed position (>= 0)", Some(&frame)),
            },
            None => None,
        };
        self.subscriptions.push(Subscription {
            id,
            destination,
            ack,
        });
        self.queue.push_back(Command::Subscribe { since });
        self.receipt(&frame);
    }

    fn unsubscribe(&mut self, frame: Frame) {
        let (key, destination) = (frame.header("id"), frame.header("destination"));
        let before = self.subscriptions.len();
        self.subscriptions.retain(|sub| match key {
            Some(id) => sub.id != id,
            None => Some(sub.destination.as_str()) != destination,
        });
        if self.subscriptions.len() == before {
            return self.fail("no such subscription", Some(&frame));
        }
        self.receipt(&frame);
    }

    fn ack(&mut self, frame: Frame) {
        // 1.2 acks by `id` (the MESSAGE's `ack`); 1.0 and 1.1 by `message-id`.
        let id = frame.header("id").or_else(|| frame.header("message-id"));
        let known = id
            .and_then(|id| id.trim().parse::<i64>().ok())
            .is_some_and(|seq| {
                self.sent
                    .is_some_and(|(first, last)| (first..=last).contains(&seq))
            });
        if !known {
            return self.fail("ACK or NACK of a message never sent", Some(&frame));
        }
        self.receipt(&frame);
    }

    fn message(&mut self, seq: i64, json: &str, send: &mut dyn FnMut(&str)) {
        self.sent = Some(match self.sent {
            Some((first, _)) => (first, seq),
            None => (seq, seq),
        });
        let seq_text = seq.to_string();
        let length = json.len().to_string();
        for sub in &self.subscriptions {
            let mut frame = Frame::new("MESSAGE")
                .with("destination", &sub.destination)
                .with("subscription", &sub.id)
                .with("message-id", &seq_text)
                .with("content-type", "application/json")
                .with("content-length", &length);
            if sub.ack != AckMode::Auto {
                frame = frame.with("ack", &seq_text);
            }
            frame.body = json.as_bytes().to_vec();
            send(&encode(&frame, self.version));
        }
    }
}

impl Framing for Stomp {
    const NAME: &'static str = "stomp";

    fn read(&mut self, data: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        if let Err(error) = self.decoder.push(data) {
            self.fail(&error.to_string(), None);
        }
    }

    fn next_command(&mut self) -> Option<Command> {
        loop {
            if let Some(command) = self.queue.pop_front() {
                return Some(command);
            }
            if matches!(self.state, State::Closed | State::Authenticating) {
                return None;
            }
            match self.decoder.decode() {
                Ok(None) => return None,
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(Some(Decoded::Frame(frame))) => self.handle(frame),
                Err(error @ (CodecError::TooLarge(_) | CodecError::TooManyHeaders(_))) => {
                    self.fail(&error.to_string(), None)
                }
                Err(error @ CodecError::Malformed(_)) => self.fail(&error.to_string(), None),
            }
        }
    }

    fn frame(&mut self, out: Out<'_>, send: &mut dyn FnMut(&str)) {
        if self.state == State::Closed {
            return;
        }
        match out {
            Out::Event(seq, json) | Out::Reset(seq, json) => self.message(seq, json, send),
        }
    }

    fn connected(&mut self, user_id: Uuid) -> Vec<String> {
        self.user_id = Some(user_id);
        self.state = State::Connected;
        let mut connected = Frame::new("CONNECTED")
            .with("version", self.version.as_str())
            .with("server", concat!("herald/", env!("CARGO_PKG_VERSION")))
            .with("user-name", &user_id.to_string());
        if self.version >= Version::V11 {
            let ours = self.heartbeat_ms();
            connected = connected.with("heart-beat", &format!("{ours},{ours}"));
        }
        let mut replies = vec![encode(&connected, self.version)];
        if let Some(id) = self.connect_receipt.take() {
            replies.push(encode(
                &Frame::new("RECEIPT").with("receipt-id", &id),
                self.version,
            ));
        }
        replies
    }

    fn refused(&mut self, why: &str) -> Option<String> {
        self.state = State::Closed;
        self.queue.clear();
        let mut error = Frame::new("ERROR").with("message", why);
        error.body = why.as_bytes().to_vec();
        Some(encode(&error, self.version))
    }

    fn heartbeat(&mut self) -> Option<String> {
        (self.sends_heartbeats && self.state == State::Connected).then(|| "\n".to_owned())
    }

    fn closing(&mut self, reason: DisconnectReason) -> Option<String> {
        let why = match reason {
            DisconnectReason::ClientTimeout => "client timeout",
            DisconnectReason::ServerShutdown => "server shutting down: reconnect with since",
            DisconnectReason::BrokerLost => "event broker unavailable: reconnect with since",
            DisconnectReason::TooSlow => "too slow: reconnect and reload",
            DisconnectReason::Unauthorized => "token expired or revoked: log in again",
        };
        self.refused(why)
    }

    fn silence_limit(&self) -> Option<Duration> {
        self.silence_limit
    }
}

/// A `heart-beat: cx,cy` header's two numbers.
fn parse_heart_beat(value: &str) -> Option<(u64, u64)> {
    let (cx, cy) = value.split_once(',')?;
    Some((cx.trim().parse().ok()?, cy.trim().parse().ok()?))
}

/// The token a CONNECT frame carries: `Authorization: Bearer`, `token`, or `passcode`.
fn token_of(frame: &Frame) -> Option<String> {
    let bearer = frame
        .header("Authorization")
        .or(frame.header("authorization"));
    let bearer = bearer.and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer
        .or(frame.header("token"))
        .or(frame.header("passcode"))
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
}

/// Whether `destination` names `user_id`'s own feed (§4's list).
pub fn is_own_feed(destination: &str, user_id: Uuid, exchange: &str) -> bool {
    let is_key = |key: &str| {
        let id = key.strip_prefix("user.").unwrap_or(key);
        Uuid::parse_str(id).is_ok_and(|id| id == user_id)
    };
    match destination {
        "/user/queue/feed" | "/queue/feed" | "/topic/feed" => true,
        _ => {
            if let Some(rest) = destination.strip_prefix("/exchange/") {
                rest.split_once('/')
                    .is_some_and(|(name, key)| name == exchange && is_key(key))
            } else if let Some(key) = destination.strip_prefix("/topic/") {
                is_key(key)
            } else {
                false
            }
        }
    }
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
