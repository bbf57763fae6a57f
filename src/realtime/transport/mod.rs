//! The transports: how a session's frames reach its client and how its client is read. Each is
//! a framing (`framing::Framing`) run by one actor per connection over the session core:
//! `ws_session::WsSession` on a WebSocket, behind a guard on the size of the client's frames
//! (`frame_guard`), or `stream_session::StreamSession` on a streamed HTTP response. Framings:
//! the JSON feed of §3 (`json`), STOMP of §4 (`stomp`), that inside SockJS (`sockjs`), Server-Sent Events of §5 (`sse`).

pub mod frame_guard;
pub mod framing;
pub mod in_band;
pub mod json;
pub mod sockjs;
pub mod sse;
pub mod stomp;
pub mod stream_session;
pub mod ws_session;
