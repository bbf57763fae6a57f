//! The transports: how a session's frames reach its client and how its client is read. Today
//! the JSON WebSocket of the contract's §3 (`json_socket`), behind a guard on the size of the
//! client's frames (`frame_guard`).

pub mod frame_guard;
pub mod json_socket;
