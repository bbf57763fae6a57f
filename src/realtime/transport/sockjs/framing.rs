//! `SockJs<F>`: a framing inside SockJS frames, for SockJS's `websocket` transport: `o` on
//! open, each of the inner framing's messages (one STOMP frame each) as its own `a[...]`, `h`
//! as the heartbeat when the inner framing has none, `c[...]` before a close. The client's
//! frames are JSON arrays of strings, each read by the inner framing in turn.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web_actors::ws::CloseCode;
use uuid::Uuid;

use super::frames::{self, Refused};
use crate::realtime::session::core::Out;
use crate::realtime::session::protocol::DisconnectReason;
use crate::realtime::transport::framing::{Command, Framing};

pub struct SockJs<F: Framing> {
    inner: F,
    queue: VecDeque<Command>,
    closed: bool,
}

impl<F: Framing> SockJs<F> {
    pub fn new(inner: F) -> Self {
        SockJs {
            inner,
            queue: VecDeque::new(),
            closed: false,
        }
    }

    fn wrap(text: &str) -> String {
        frames::messages([text])
    }
}

impl<F: Framing> Framing for SockJs<F> {
    const NAME: &'static str = "sockjs";

    fn read(&mut self, data: &[u8]) {
        if self.closed {
            return;
        }
        match frames::client_messages(data) {
            Ok(messages) => {
                for message in messages {
                    self.inner.read(message.as_bytes());
                }
            }
            Err(Refused::Empty) => {}
            Err(Refused::Broken) => {
                self.closed = true;
                self.queue.push_back(Command::Close {
                    code: CloseCode::Unsupported,
                    reason: "Broken JSON encoding.".to_owned(),
                });
            }
        }
    }

    fn next_command(&mut self) -> Option<Command> {
        if let Some(command) = self.queue.pop_front() {
            return Some(command);
        }
        Some(match self.inner.next_command()? {
            Command::Reply(text) => Command::Reply(Self::wrap(&text)),
            Command::Close { code, reason } => {
                self.queue.push_back(Command::Close { code, reason });
                Command::Reply(frames::close(frames::GO_AWAY))
            }
            other => other,
        })
    }

    fn frame(&mut self, out: Out<'_>, send: &mut dyn FnMut(&str)) {
        self.inner.frame(out, &mut |text| send(&Self::wrap(text)));
    }

    fn opening(&mut self) -> Option<String> {
        Some(frames::OPEN.to_owned())
    }

    fn connected(&mut self, user_id: Uuid) -> Vec<String> {
        let replies = self.inner.connected(user_id);
        replies.iter().map(|text| Self::wrap(text)).collect()
    }

    fn refused(&mut self, why: &str) -> Option<String> {
        self.inner.refused(why).map(|text| Self::wrap(&text))
    }

    fn heartbeat(&mut self) -> Option<String> {
        Some(match self.inner.heartbeat() {
            Some(text) => Self::wrap(&text),
            None => frames::HEARTBEAT.to_owned(),
        })
    }

    fn closing(&mut self, reason: DisconnectReason) -> Option<String> {
        self.inner.closing(reason).map(|text| Self::wrap(&text))
    }

    fn silence_limit(&self) -> Option<Duration> {
        self.inner.silence_limit()
    }
}
