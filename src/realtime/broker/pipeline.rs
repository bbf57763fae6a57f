//! Pipelining lapin calls. lapin writes a method's frames to its send queue the first time the
//! call's future is polled, then waits for its I/O thread to write them (and, for a method with a
//! reply, for the broker). Awaiting each call before the next therefore costs a thread hop per
//! message. Starting each call (one poll) in order and awaiting them later keeps their order on
//! the channel without that cost: the fan-out's publishes, the node queue's bindings and the load
//! generator's baseline all go out this way.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use futures_util::future::{maybe_done, BoxFuture, MaybeDone};

/// A call whose frames are queued, to be awaited with [`finish`].
pub type Started<'a, T> = MaybeDone<BoxFuture<'a, T>>;

/// Polls `call` once, so its frames are queued now, behind those of every call started before.
pub async fn start<T>(call: BoxFuture<'_, T>) -> Started<'_, T> {
    let mut started = maybe_done(call);
    std::future::poll_fn(|cx| {
        let _ = Pin::new(&mut started).poll(cx);
        Poll::Ready(())
    })
    .await;
    started
}

/// Waits for a started call to complete and returns its output.
pub async fn finish<T>(mut started: Started<'_, T>) -> Option<T> {
    (&mut started).await;
    Pin::new(&mut started).take_output()
}
