//! The body deadline: a request body must arrive whole within `http.body_timeout_secs` of its
//! headers. actix-http bounds how long the headers may take, but not the body, so without this
//! a client that declares 5,000 bytes and sends 11 holds its connection (and a worker's
//! attention) for as long as it likes. Past the deadline the body stream fails with
//! [`BodyTimedOut`], the extractor's error becomes 408, and the connection is closed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::{Error, HttpMessage};
use futures_util::Stream;
use tokio::time::{sleep, Sleep};

use super::AppState;

/// The error a body stream ends with when its deadline passes.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {0} seconds")]
pub struct BodyTimedOut(pub u64);

impl BodyTimedOut {
    /// Finds this error inside a payload error, if that is what it is.
    pub fn within(error: &PayloadError) -> Option<&BodyTimedOut> {
        match error {
            PayloadError::Io(io) => io.get_ref()?.downcast_ref::<BodyTimedOut>(),
            _ => None,
        }
    }
}

/// The middleware (mounted with `actix_web::middleware::from_fn`).
pub async fn enforce(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let timeout = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.body_timeout);
    if let Some(timeout) = timeout.filter(|_| has_body(&req)) {
        let body = req.take_payload();
        req.set_payload(Payload::Stream {
            payload: Box::pin(Deadline::new(body, timeout)),
        });
    }
    next.call(req).await
}

/// Whether a body follows the headers. A WebSocket handshake declares none (its "body" is the
/// socket itself, for as long as the session lasts), so it never gets a deadline; anything that
/// declares a length or a chunked body does, whatever other headers it sends.
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    declared.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING)
}

struct Deadline<S> {
    inner: S,
    timer: Pin<Box<Sleep>>,
    secs: u64,
    expired: bool,
}

impl<S> Deadline<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        Deadline {
            inner,
            timer: Box::pin(sleep(timeout)),
            secs: timeout.as_secs(),
            expired: false,
        }
    }
}

impl<S> Stream for Deadline<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            self.expired = true;
            let error = std::io::Error::new(std::io::ErrorKind::TimedOut, BodyTimedOut(self.secs));
            return Poll::Ready(Some(Err(PayloadError::Io(error))));
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix_web::web::Bytes;
    use futures_util::{stream, StreamExt};

    use super::{BodyTimedOut, Deadline};

    #[actix_web::test]
    async fn a_body_that_stalls_fails_at_its_deadline() {
        let trickle = stream::iter([Ok(Bytes::from_static(b"{\"a\""))]).chain(stream::pending());
        let mut body = Deadline::new(Box::pin(trickle), Duration::from_millis(50));
        assert!(matches!(body.next().await, Some(Ok(_))));
        let error = body.next().await.expect("an item").expect_err("timed out");
        assert_eq!(BodyTimedOut::within(&error).map(|e| e.0), Some(0));
        assert!(body.next().await.is_none());
    }
}
