//! Copying a tunnel both ways with an idle limit instead of a total one: a transfer of any length goes
//! on while bytes flow, and a connection nobody uses is closed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Copies between `a` and `b` until both sides are done, or fails with `TimedOut` after `idle` without a
/// byte in either direction. Returns the bytes copied a→b and b→a.
pub async fn copy_bidirectional_idle<A, B>(
    a: &mut A,
    b: &mut B,
    idle: Duration,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Watched {
        inner: a,
        last: last.clone(),
        start,
    };
    let mut b = Watched {
        inner: b,
        last: last.clone(),
        start,
    };
    let watchdog = async {
        let tick = (idle / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            let quiet = start
                .elapsed()
                .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
            if quiet >= idle {
                return;
            }
        }
    };
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut a, &mut b) => result,
        () = watchdog => Err(io::Error::new(io::ErrorKind::TimedOut, format!("no traffic for {} s", idle.as_secs()))),
    }
}

/// Records the time of the last byte read or written.
struct Watched<'a, T> {
    inner: &'a mut T,
    last: Arc<AtomicU64>,
    start: Instant,
}

impl<T> Watched<'_, T> {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut *self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_slow_but_steady_transfer_outlives_the_idle_limit() {
        let (mut client, mut proxy_side) = tokio::io::duplex(1024);
        let (mut upstream_side, mut server) = tokio::io::duplex(1024);
        let idle = Duration::from_millis(200);
        let copier = tokio::spawn(async move {
            copy_bidirectional_idle(&mut proxy_side, &mut upstream_side, idle).await
        });
        // 12 pieces, 50 ms apart: 600 ms in all, three times the idle limit, never 200 ms quiet
        let writer = tokio::spawn(async move {
            for i in 0..12u8 {
                client.write_all(&[i; 100]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            client.shutdown().await.unwrap();
            client
        });
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.unwrap();
        assert_eq!(received.len(), 1200);
        drop(server);
        let _client = writer.await.unwrap();
        let (up, _) = copier.await.unwrap().unwrap();
        assert_eq!(up, 1200);
    }

    #[tokio::test]
    async fn a_quiet_tunnel_is_closed() {
        let (_client, mut proxy_side) = tokio::io::duplex(1024);
        let (mut upstream_side, _server) = tokio::io::duplex(1024);
        let err = copy_bidirectional_idle(
            &mut proxy_side,
            &mut upstream_side,
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
