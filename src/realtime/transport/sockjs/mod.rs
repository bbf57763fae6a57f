//! SockJS (§4): the protocol's frames (`frames`) and a framing carried inside them
//! (`framing::SockJs`), STOMP in herald's case.

pub mod frames;
pub mod framing;
