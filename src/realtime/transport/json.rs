//! `JsonFeed`: the framing of §3's WebSocket: each event (and `feed.reset`) is its JSON object,
//! one text message each. The client authenticates at the upgrade and says nothing afterwards
//! that the session reads: its data messages only count as signs of life.

use super::framing::{Command, Framing};
use crate::realtime::session::core::Out;

#[derive(Debug, Default)]
pub struct JsonFeed;

impl Framing for JsonFeed {
    const NAME: &'static str = "json";

    fn read(&mut self, _: &[u8]) {}

    fn next_command(&mut self) -> Option<Command> {
        None
    }

    fn frame(&mut self, out: Out<'_>, send: &mut dyn FnMut(&str)) {
        match out {
            Out::Event(_, json) | Out::Reset(_, json) => send(json),
        }
    }
}
