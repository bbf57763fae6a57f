//! `Sse`: the framing of §5's Server-Sent Events. Each event is `id: <seq>`, `event: <type>`,
//! `data: <the JSON object of §3>` and a blank line, so a browser's `EventSource` resumes by
//! itself with `Last-Event-ID`; `feed.reset` is an event of that name with its `id:` too. A
//! comment line is the heartbeat; the stream opens with a `retry:` hint. The client sends
//! nothing on the stream.

use serde::Deserialize;

use super::framing::{Command, Framing};
use crate::realtime::session::core::Out;

/// How long a browser waits before reconnecting, in milliseconds.
pub const RETRY_MS: u64 = 2000;

#[derive(Debug, Default)]
pub struct Sse;

impl Sse {
    /// What the stream opens with: the reconnect hint, and a comment so proxies and clients see
    /// bytes at once.
    pub fn preamble() -> String {
        format!("retry: {RETRY_MS}\n: herald feed\n\n")
    }
}

/// An event's `type`, read from its JSON object.
fn event_type(json: &str) -> String {
    #[derive(Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_str::<Typed>(json)
        .map(|typed| typed.kind)
        .ok()
        // An event name is one line: nothing else could end up in the stream's framing.
        .filter(|kind| !kind.contains(['\n', '\r']))
        .unwrap_or_else(|| "message".to_owned())
}

impl Framing for Sse {
    const NAME: &'static str = "sse";

    fn read(&mut self, _: &[u8]) {}

    fn next_command(&mut self) -> Option<Command> {
        None
    }

    fn frame(&mut self, out: Out<'_>, send: &mut dyn FnMut(&str)) {
        let (Out::Event(seq, json) | Out::Reset(seq, json)) = out;
        // The JSON objects herald writes are one line; SSE data lines must not break.
        let data = json.replace(['\n', '\r'], " ");
        send(&format!(
            "id: {seq}\nevent: {}\ndata: {data}\n\n",
            event_type(json)
        ));
    }

    fn heartbeat(&mut self) -> Option<String> {
        Some(": ping\n\n".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::Sse;
    use crate::realtime::session::core::Out;
    use crate::realtime::transport::framing::Framing;

    #[test]
    fn events_carry_seq_as_id_and_their_type_as_name() {
        let mut sent = Vec::new();
        let mut sse = Sse;
        sse.frame(
            Out::Event(7, r#"{"type":"post.created","seq":7}"#),
            &mut |s| sent.push(s.to_owned()),
        );
        sse.frame(
            Out::Reset(9, r#"{"type":"feed.reset","seq":9}"#),
            &mut |s| sent.push(s.to_owned()),
        );
        assert_eq!(
            sent,
            [
                "id: 7\nevent: post.created\ndata: {\"type\":\"post.created\",\"seq\":7}\n\n",
                "id: 9\nevent: feed.reset\ndata: {\"type\":\"feed.reset\",\"seq\":9}\n\n",
            ]
        );
        assert!(Sse::preamble().starts_with("retry: "));
        assert_eq!(sse.heartbeat().as_deref(), Some(": ping\n\n"));
    }
}
