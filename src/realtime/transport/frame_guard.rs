//! `FrameGuard`: sits between a WebSocket's request payload and actix's frame codec, and reads
//! each client frame's header as it passes. actix-http checks a frame's size only once the whole
//! frame is buffered, so a client declaring 2^62 bytes could make the server buffer as much as
//! it cares to send. The guard refuses such a frame from its header: the stream ends with an
//! error and [`FrameLimit::exceeded`] tells the session to close with 1009.
//!
//! It also hands the codec at most one frame per poll, then yields: the codec's reader drains
//! everything it is offered before decoding one frame, so without this a flood of small frames
//! would pile up in its buffer faster than they are decoded. With it, what a session buffers is
//! bounded by one frame (at most `realtime.max_frame_bytes`) plus a socket read.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// Shared between the guard and its session: set once a frame was refused for its size.
#[derive(Clone, Default)]
pub struct FrameLimit(Rc<Cell<bool>>);

impl FrameLimit {
    pub fn exceeded(&self) -> bool {
        self.0.get()
    }
}

/// Where the guard is within the client's frames.
enum Position {
    /// Reading a header: the bytes seen so far (at most 14).
    Header { bytes: [u8; 14], len: usize },
    /// Inside a payload: how many bytes of it are still to come.
    Payload(u64),
}

const NEW_HEADER: Position = Position::Header {
    bytes: [0; 14],
    len: 0,
};

pub struct FrameGuard<S> {
    inner: S,
    max_frame: u64,
    limit: FrameLimit,
    position: Position,
    /// Bytes received but not yet handed on.
    pending: Bytes,
    /// A frame boundary was just handed on: yield once before the next.
    yield_next: bool,
    done: bool,
}

impl<S> FrameGuard<S> {
    pub fn new(inner: S, max_frame: usize) -> (Self, FrameLimit) {
        let limit = FrameLimit::default();
        let guard = FrameGuard {
            inner,
            max_frame: max_frame as u64,
            limit: limit.clone(),
            position: NEW_HEADER,
            pending: Bytes::new(),
            yield_next: false,
            done: false,
        };
        (guard, limit)
    }

    /// How many of `pending`'s bytes may be handed on now: up to the end of the current frame.
    /// `Err` when a header declares a payload above the limit.
    fn take_span(&mut self) -> Result<usize, ()> {
        let mut taken = 0;
        while taken < self.pending.len() {
            match &mut self.position {
                Position::Payload(left) => {
                    let n = (*left).min((self.pending.len() - taken) as u64);
                    *left -= n;
                    taken += n as usize;
                    if *left == 0 {
                        self.position = NEW_HEADER;
                        return Ok(taken);
                    }
                }
                Position::Header { bytes, len } => {
                    bytes[*len] = self.pending[taken];
                    *len += 1;
                    taken += 1;
                    if let Some(payload) = header_payload_len(&bytes[..*len]) {
                        if payload > self.max_frame {
                            return Err(());
                        }
                        if payload == 0 {
                            self.position = NEW_HEADER;
                            return Ok(taken);
                        }
                        self.position = Position::Payload(payload);
                    }
                }
            }
        }
        Ok(taken)
    }
}

/// The payload length a complete header declares, or `None` while the header is incomplete.
/// (The header is 2 bytes, then 0, 2 or 8 of extended length, then 4 of mask if masked.)
fn header_payload_len(header: &[u8]) -> Option<u64> {
    if header.len() < 2 {
        return None;
    }
    let masked = header[1] & 0x80 != 0;
    let (extended, length) = match header[1] & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let total = 2 + extended + if masked { 4 } else { 0 };
    if header.len() < total {
        return None;
    }
    length.or_else(|| {
        let mut n = 0u64;
        for byte in &header[2..2 + extended] {
            n = (n << 8) | u64::from(*byte);
        }
        Some(n)
    })
}

impl<S> Stream for FrameGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.yield_next {
            // Let the codec decode what it has before it is offered more.
            self.yield_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => self.pending = chunk,
                other => return other,
            }
        }
        match self.take_span() {
            Ok(n) => {
                self.yield_next = true;
                let span = self.pending.split_to(n);
                Poll::Ready(Some(Ok(span)))
            }
            Err(()) => {
                self.done = true;
                self.pending = Bytes::new();
                self.limit.0.set(true);
                Poll::Ready(Some(Err(PayloadError::Overflow)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::web::Bytes;
    use futures_util::{stream, StreamExt};

    use super::FrameGuard;

    /// A masked client frame header declaring `len` bytes (payload not included).
    fn header(len: u64) -> Vec<u8> {
        let mut h = vec![0x82];
        if len < 126 {
            h.push(0x80 | len as u8);
        } else if len <= u64::from(u16::MAX) {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut f = header(len as u64);
        f.extend(std::iter::repeat_n(0u8, len));
        f
    }

    async fn collect(chunks: Vec<Vec<u8>>, max: usize) -> (Vec<Result<Bytes, ()>>, bool) {
        let input = stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))));
        let (guard, limit) = FrameGuard::new(input, max);
        let out = guard.map(|r| r.map_err(|_| ())).collect().await;
        (out, limit.exceeded())
    }

    #[actix_web::test]
    async fn frames_within_the_limit_pass_one_per_chunk() {
        let mut both = frame(3);
        both.extend(frame(200));
        let (out, exceeded) = collect(vec![both.clone()], 1000).await;
        assert!(!exceeded);
        let lens: Vec<usize> = out
            .iter()
            .map(|c| c.as_ref().map_or(0, Bytes::len))
            .collect();
        assert_eq!(lens, vec![6 + 3, 8 + 200]);
    }

    #[actix_web::test]
    async fn a_header_split_across_chunks_is_still_read() {
        let big = header(1 << 62);
        let chunks = big.iter().map(|b| vec![*b]).collect();
        let (out, exceeded) = collect(chunks, 1000).await;
        assert!(exceeded);
        assert!(out.last().is_some_and(Result::is_err));
    }

    #[actix_web::test]
    async fn an_oversized_frame_is_refused_from_its_header() {
        let mut input = frame(10);
        input.extend(header(1001));
        input.extend(vec![0u8; 4096]);
        let (out, exceeded) = collect(vec![input], 1000).await;
        assert!(exceeded);
        assert_eq!(out.len(), 2, "the small frame, then the refusal");
        assert!(out[0].is_ok() && out[1].is_err());
        let (_, exceeded) = collect(vec![frame(1000)], 1000).await;
        assert!(!exceeded, "exactly the limit is allowed");
    }
}
