//! Response bodies: upstream bodies streamed through (counted for the access log), or bytes we made.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use connectors_registry::BoxError;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// Counts the bytes of a streamed body and calls `on_end(bytes, complete)` once, when the body ends or
/// is dropped (a client that went away). A body of known length is complete when all of it was sent,
/// even if the server never polled for its end.
pub struct Counted<B, F: FnOnce(u64, bool)> {
    inner: B,
    bytes: u64,
    expected: Option<u64>,
    on_end: Option<F>,
}

impl<B: Body, F: FnOnce(u64, bool)> Counted<B, F> {
    pub fn new(inner: B, on_end: F) -> Self {
        let expected = inner.size_hint().exact();
        Self {
            inner,
            bytes: 0,
            expected,
            on_end: Some(on_end),
        }
    }
}

impl<B, F: FnOnce(u64, bool)> Counted<B, F> {
    fn finish(&mut self, ended: bool) {
        if let Some(f) = self.on_end.take() {
            f(self.bytes, ended || self.expected == Some(self.bytes));
        }
    }
}

impl<B, F> Body for Counted<B, F>
where
    B: Body<Data = Bytes> + Unpin,
    F: FnOnce(u64, bool) + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, F: FnOnce(u64, bool)> Drop for Counted<B, F> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Option<(u64, bool)>>>;

    fn recorder() -> (Seen, impl FnOnce(u64, bool) + Unpin) {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        (seen, move |bytes, complete| {
            *s.lock().unwrap() = Some((bytes, complete))
        })
    }

    #[tokio::test]
    async fn a_fully_sent_body_is_complete_even_if_its_end_is_never_polled() {
        let (seen, on_end) = recorder();
        let mut body = Counted::new(full("0123456789"), on_end);
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(frame.is_some());
        drop(body);
        assert_eq!(*seen.lock().unwrap(), Some((10, true)));
    }

    #[tokio::test]
    async fn a_body_dropped_early_is_incomplete() {
        let (seen, on_end) = recorder();
        let body = Counted::new(full("0123456789"), on_end);
        drop(body);
        assert_eq!(*seen.lock().unwrap(), Some((0, false)));
    }
}
