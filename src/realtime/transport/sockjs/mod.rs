//! SockJS (§4): the protocol's frames (`frames`), a framing carried inside them for its
//! `websocket` transport (`framing::SockJs`, STOMP inside), and for its HTTP transports a
//! session that outlives each request (`http_session`), kept by id (`sessions`).

pub mod frames;
pub mod framing;
pub mod http_session;
pub mod sessions;
