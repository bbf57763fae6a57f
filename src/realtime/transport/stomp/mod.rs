//! STOMP (§4): herald's own codec (`codec`) and the framing that speaks the feed in it
//! (`framing`), run over a WebSocket by `WsSession`.

pub mod codec;
pub mod framing;
