//! The WebSocket feed as a client sees it: a client that answers pings by itself, what it
//! receives, and the checks tests make on events and close frames.

use std::time::Duration;

use actix_codec::Framed;
use awc::ws::{CloseReason, Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::app::TestUser;
use super::DEADLINE;

/// A WebSocket feed client. A background task reads the socket, answers the server's pings
/// at once (so a slow test step never looks like a silent client) and passes every other
/// frame on; `send` writes through the same task.
///
/// Every frame that carries a position is checked as it arrives: events in strictly increasing
/// `seq`, a `feed.reset` at or above the last one. So every test that reads a feed also checks
/// that nothing came twice or out of order.
pub struct FeedClient {
    frames: mpsc::UnboundedReceiver<Frame>,
    outgoing: mpsc::UnboundedSender<Message>,
    last_seq: Option<i64>,
}

pub enum Received {
    Event(Value),
    Closed(Option<CloseReason>),
    TimedOut,
}

impl FeedClient {
    pub fn answering(mut framed: Framed<BoxedSocket, Codec>) -> FeedClient {
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Message>();
        actix_rt::spawn(async move {
            loop {
                tokio::select! {
                    frame = framed.next() => match frame {
                        Some(Ok(Frame::Ping(payload))) => {
                            if framed.send(Message::Pong(payload)).await.is_err() {
                                break;
                            }
                        }
                        Some(Ok(frame)) => {
                            let closing = matches!(frame, Frame::Close(_));
                            if frames_tx.send(frame).is_err() || closing {
                                break;
                            }
                        }
                        Some(Err(_)) | None => break,
                    },
                    message = outgoing_rx.recv() => match message {
                        Some(message) => {
                            if framed.send(message).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        });
        FeedClient {
            frames,
            outgoing,
            last_seq: None,
        }
    }

    /// The position of the last event (or reset) received.
    pub fn last_seq(&self) -> Option<i64> {
        self.last_seq
    }

    fn check_position(&mut self, value: &Value) {
        let Some(seq) = value.get("seq").and_then(Value::as_i64) else {
            return;
        };
        if let Some(last) = self.last_seq {
            if value["type"] == "feed.reset" {
                assert!(seq >= last, "a reset to {seq} after {last}: {value}");
            } else {
                assert!(
                    seq > last,
                    "position {seq} after {last}: out of order or twice: {value}"
                );
            }
        }
        self.last_seq = Some(seq);
    }

    /// The next frame of interest within `within`: an event, the server's close, or nothing.
    pub async fn receive(&mut self, within: Duration) -> Received {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Err(_) => return Received::TimedOut,
                Ok(None) => return Received::Closed(None),
                Ok(Some(Frame::Text(bytes))) => {
                    let value = serde_json::from_slice(&bytes).expect("events are JSON");
                    self.check_position(&value);
                    return Received::Event(value);
                }
                Ok(Some(Frame::Close(reason))) => return Received::Closed(reason),
                Ok(Some(_)) => {}
            }
        }
    }

    /// The next raw frame (pings excepted), for tests about the protocol itself.
    pub async fn next_frame(&mut self) -> Frame {
        tokio::time::timeout(DEADLINE, self.frames.recv())
            .await
            .expect("a frame in time")
            .expect("socket open")
    }

    /// The next event; fails the test if none arrives within the deadline.
    pub async fn next_event(&mut self) -> Value {
        match self.receive(DEADLINE).await {
            Received::Event(value) => value,
            Received::Closed(reason) => {
                panic!("feed closed while waiting for an event: {reason:?}")
            }
            Received::TimedOut => panic!("no event within {DEADLINE:?}"),
        }
    }

    /// The next event must be `author`'s new post `post_id` with `text`.
    pub async fn expect_created(&mut self, post_id: Uuid, author: &TestUser, text: &str) {
        let event = self.next_event().await;
        assert_event(&event, "post.created", post_id, author.id, Some(text));
    }

    /// Waits for the server's close frame, skipping anything before it.
    pub async fn close_reason(&mut self) -> Option<CloseReason> {
        loop {
            match self.receive(DEADLINE).await {
                Received::Event(_) => continue,
                Received::Closed(reason) => return reason,
                Received::TimedOut => panic!("the server did not close within {DEADLINE:?}"),
            }
        }
    }

    pub async fn send(&mut self, message: Message) {
        self.outgoing.send(message).expect("socket task alive");
    }
}

/// Reads a socket nobody answered pings on until the server's close frame.
pub async fn raw_close_reason(framed: &mut Framed<BoxedSocket, Codec>) -> Option<CloseReason> {
    loop {
        match tokio::time::timeout(DEADLINE, framed.next()).await {
            Err(_) => panic!("the server did not close within {DEADLINE:?}"),
            Ok(Some(Ok(Frame::Close(reason)))) => return reason,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => return None,
        }
    }
}

/// Asserts an event is exactly the given post event.
pub fn assert_event(event: &Value, kind: &str, post_id: Uuid, author: Uuid, text: Option<&str>) {
    assert_eq!(event["type"], kind, "event: {event}");
    assert!(
        event["seq"].as_i64().is_some_and(|seq| seq > 0),
        "event: {event}"
    );
    assert_eq!(event["postId"], post_id.to_string(), "event: {event}");
    assert_eq!(
        event["author_user_id"],
        author.to_string(),
        "event: {event}"
    );
    match text {
        Some(text) => assert_eq!(event["postText"], text, "event: {event}"),
        None => assert!(event.get("postText").is_none(), "event: {event}"),
    }
}
