//! What herald keeps of each accepted TCP connection (set by `HttpServer::on_connect`): its
//! socket's descriptor, so a WebSocket session can watch and, if its client stops reading,
//! drop its connection without the help of its frozen actor (see `realtime::session::write_watch`).

use std::any::Any;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use actix_web::dev::Extensions;

/// The descriptor of the connection a request arrived on.
#[derive(Clone, Copy)]
pub struct ConnectionFd(RawFd);

impl ConnectionFd {
    /// The `on_connect` hook: remembers the socket of each plain TCP connection.
    pub fn record(connection: &dyn Any, data: &mut Extensions) {
        if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
            data.insert(ConnectionFd(stream.as_raw_fd()));
        }
    }

    /// A descriptor of its own for the same socket, which stays valid for as long as it is
    /// kept, whatever becomes of the connection.
    ///
    /// # Safety
    /// The connection must still be open: call this from the handler of one of its requests,
    /// before that handler returns (the connection's dispatcher, which owns the descriptor,
    /// is then running it).
    pub unsafe fn duplicate(&self) -> std::io::Result<socket2::Socket> {
        // SAFETY: the caller guarantees the descriptor is open for the duration of this call.
        let borrowed = unsafe { BorrowedFd::borrow_raw(self.0) };
        Ok(socket2::Socket::from(borrowed.try_clone_to_owned()?))
    }
}
