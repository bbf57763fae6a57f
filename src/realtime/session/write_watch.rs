//! `WriteWatch`: notices a WebSocket whose client stopped reading, and drops its connection.
//!
//! A session actor runs inside its response body: actix-http polls that body (and so the actor)
//! only while the connection's write buffer has room. When the client stops reading, the socket
//! fills, the body is no longer polled, and the actor freezes: it cannot handle a `Disconnect`,
//! answer a heartbeat, or close anything. So the evidence is kept outside the actor: whoever
//! queues something for the session marks it *owed*, every poll of the body clears that, and
//! the watchdog's reaper finds sessions owed something for longer than
//! `realtime.write_timeout_secs`. Dropping such a session must not wait on the frozen actor
//! either, so the watch holds a duplicate of the connection's socket and shuts it down: the
//! connection's pending write then fails, actix drops the connection, and the actor with it.

use std::net::Shutdown;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::Bytes;

/// Milliseconds since the first watch was made: a clock that fits an atomic.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    // +1 so that no real instant reads as 0, which means "nothing owed".
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

pub struct WriteWatch {
    /// When something was first queued for the session since its body was last polled (ms,
    /// from `now_ms`), or 0.
    owed_since: AtomicU64,
    body_alive: AtomicBool,
    /// A duplicate of the connection's socket (`None` in tests that use stand-in sessions).
    socket: Option<socket2::Socket>,
}

impl WriteWatch {
    pub fn new(socket: Option<socket2::Socket>) -> Arc<Self> {
        now_ms(); // start the clock
        Arc::new(WriteWatch {
            owed_since: AtomicU64::new(0),
            body_alive: AtomicBool::new(true),
            socket,
        })
    }

    /// Something was queued for the session.
    pub fn owed(&self) {
        let _ = self
            .owed_since
            .compare_exchange(0, now_ms(), Ordering::AcqRel, Ordering::Relaxed);
    }

    /// The connection took output: the session is not stuck.
    fn progressed(&self) {
        self.owed_since.store(0, Ordering::Release);
    }

    /// How long the session has owed output without its body being polled.
    pub fn stalled_for(&self) -> Duration {
        match self.owed_since.load(Ordering::Acquire) {
            0 => Duration::ZERO,
            since => Duration::from_millis(now_ms().saturating_sub(since)),
        }
    }

    /// Whether the connection still exists (its response body has not been dropped).
    pub fn is_open(&self) -> bool {
        self.body_alive.load(Ordering::Acquire)
    }

    /// Drops the connection at once: shut the socket down (which wakes and fails the frozen
    /// writer) with linger 0, so the last close resets it instead of waiting to deliver data
    /// the client will never read.
    pub fn abort(&self) {
        if let Some(socket) = &self.socket {
            let _ = socket.set_linger(Some(Duration::ZERO));
            if let Err(error) = socket.shutdown(Shutdown::Both) {
                log::debug!("shutting a stalled WebSocket down: {error}");
            }
        }
    }

    /// Wraps a WebSocket response body so that each poll counts as progress.
    pub fn watch_body(self: &Arc<Self>, body: BoxBody) -> WatchedBody {
        WatchedBody {
            inner: body,
            watch: Arc::clone(self),
        }
    }
}

pub struct WatchedBody {
    inner: BoxBody,
    watch: Arc<WriteWatch>,
}

impl MessageBody for WatchedBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.watch.progressed();
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.watch.body_alive.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::WriteWatch;

    #[test]
    fn owed_output_counts_until_the_body_is_polled() {
        let watch = WriteWatch::new(None);
        assert_eq!(watch.stalled_for(), Duration::ZERO);
        watch.owed();
        std::thread::sleep(Duration::from_millis(20));
        assert!(watch.stalled_for() >= Duration::from_millis(20));
        watch.owed(); // a second owed item does not restart the clock
        assert!(watch.stalled_for() >= Duration::from_millis(20));
        watch.progressed();
        assert_eq!(watch.stalled_for(), Duration::ZERO);
    }
}
