//! Two read adapters for TLS streams that carry blobs, one on each side of rustls.
//!
//! rustls' buffered API asks its transport for at most 4 KiB at a time, so a 16 KiB record costs
//! four `recvfrom` calls, and tokio-rustls hands its reader one record (≤ 16 KiB of plaintext) per
//! read, so every record is one wake-up and, further along, one `writev` on the other side. The
//! syscalls and wake-ups, not the copies or the AES, were most of the relay's CPU per GiB in forward
//! mode (bench/ANALYSIS.md). [`ReadAhead`] sits under rustls and reads the socket in 64 KiB pieces;
//! [`Coalesce`] sits above it and fills the reader's buffer with every record already decrypted or
//! decryptable without waiting. Writes pass straight through both.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much [`ReadAhead`] asks the socket for when its caller wants less.
pub const READ_AHEAD: usize = 64 * 1024;

/// Reads its inner stream in pieces of up to `capacity` bytes and serves smaller reads from them.
///
/// The buffer is allocated when a read needs it and freed as soon as it has been handed out, so an
/// idle connection holds none. A read asking for at least `capacity` bytes (or any read when
/// `capacity` is 0) goes straight to the inner stream.
#[derive(Debug)]
pub struct ReadAhead<T> {
    inner: T,
    buf: BytesMut,
    capacity: usize,
}

impl<T> ReadAhead<T> {
    /// Reads ahead by [`READ_AHEAD`] bytes.
    pub fn new(inner: T) -> Self {
        Self::with_capacity(inner, READ_AHEAD)
    }

    /// Reads ahead by `capacity` bytes; 0 passes every read through.
    pub fn with_capacity(inner: T, capacity: usize) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            capacity,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            if this.capacity == 0 || out.remaining() >= this.capacity {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.buf.reserve(this.capacity);
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.buf
            ))?;
            if n == 0 {
                this.buf = BytesMut::new();
                return Poll::Ready(Ok(()));
            }
        }
        let n = out.remaining().min(this.buf.len());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        if this.buf.is_empty() {
            this.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

/// Fills as much of each read as its inner stream can give without waiting.
///
/// Each inner read that returns data is followed by another, until the caller's buffer is full, the
/// inner stream would wait (then the data so far is returned; the inner stream has registered the
/// waker, so at worst the task is woken once for nothing), it ends, or it fails (then the data so far
/// is returned and the error with the next read). `enabled: false` passes reads through unchanged.
#[derive(Debug)]
pub struct Coalesce<T> {
    inner: T,
    enabled: bool,
    deferred: Option<io::Error>,
}

impl<T> Coalesce<T> {
    pub fn new(inner: T) -> Self {
        Self::with_enabled(inner, true)
    }

    pub fn with_enabled(inner: T, enabled: bool) -> Self {
        Self {
            inner,
            enabled,
            deferred: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.deferred.take() {
            return Poll::Ready(Err(e));
        }
        if !this.enabled {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let start = buf.filled().len();
        loop {
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {
                    if buf.filled().len() == before || buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(e)) => {
                    if buf.filled().len() == start {
                        return Poll::Ready(Err(e));
                    }
                    this.deferred = Some(e);
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => {
                    return if buf.filled().len() == start {
                        Poll::Pending
                    } else {
                        Poll::Ready(Ok(()))
                    };
                }
            }
        }
    }
}

/// Writes go straight to the inner stream.
macro_rules! write_through {
    ($name:ident) => {
        impl<T: AsyncWrite + Unpin> AsyncWrite for $name<T> {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().inner).poll_flush(cx)
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
            }
        }

        impl<T: Connection> Connection for $name<T> {
            fn connected(&self) -> Connected {
                self.inner.connected()
            }
        }
    };
}

write_through!(ReadAhead);
write_through!(Coalesce);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A test double (not a fault injector): hands out its data in fixed pieces, saying "wait" (and
    /// waking at once) after every `burst` pieces, and counts the reads that reached it.
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        piece: usize,
        burst: usize,
        since_wait: usize,
        reads: usize,
        fail_at_end: bool,
    }

    impl Pieces {
        fn new(len: usize, piece: usize, burst: usize) -> Self {
            Self {
                data: (0..len).map(|i| (i % 251) as u8).collect(),
                at: 0,
                piece,
                burst,
                since_wait: 0,
                reads: 0,
                fail_at_end: false,
            }
        }
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.since_wait == this.burst {
                this.since_wait = 0;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            this.since_wait += 1;
            this.reads += 1;
            if this.at == this.data.len() && this.fail_at_end {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")));
            }
            let n = this
                .piece
                .min(buf.remaining())
                .min(this.data.len() - this.at);
            buf.put_slice(&this.data[this.at..this.at + n]);
            this.at += n;
            Poll::Ready(Ok(()))
        }
    }

    fn expected(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    async fn read_sizes<R: AsyncRead + Unpin>(r: &mut R, each: usize) -> (Vec<u8>, Vec<usize>) {
        let mut all = Vec::new();
        let mut sizes = Vec::new();
        let mut buf = vec![0u8; each];
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                return (all, sizes);
            }
            sizes.push(n);
            all.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn read_ahead_asks_the_inner_stream_for_whole_pieces() {
        // The inner stream could give 64 KiB per read; the caller asks for 4 KiB at a time.
        let len = 1024 * 1024 + 17;
        let mut r = ReadAhead::new(Pieces::new(len, READ_AHEAD, usize::MAX));
        let (got, sizes) = read_sizes(&mut r, 4096).await;
        assert_eq!(got, expected(len));
        assert!(sizes.iter().all(|&n| n <= 4096));
        // 17 pieces of 64 KiB (the last one 17 bytes) and the read that saw the end.
        assert_eq!(r.inner.reads, len.div_ceil(READ_AHEAD) + 1);
        assert!(r.buf.capacity() == 0, "no buffer held once drained");
    }

    #[tokio::test]
    async fn read_ahead_passes_large_reads_and_zero_capacity_through() {
        let len = 300_000;
        let mut r = ReadAhead::new(Pieces::new(len, 100_000, usize::MAX));
        let (got, sizes) = read_sizes(&mut r, READ_AHEAD).await;
        assert_eq!(got, expected(len));
        // Every read went to the inner stream as it was (and one more saw the end); nothing buffered.
        assert_eq!(r.inner.reads, sizes.len() + 1);
        assert_eq!(r.buf.capacity(), 0);
        let mut off = ReadAhead::with_capacity(Pieces::new(len, 1000, usize::MAX), 0);
        let (got, _) = read_sizes(&mut off, 100).await;
        assert_eq!(got, expected(len));
        assert_eq!(off.inner.reads, len / 100 + 1);
    }

    #[tokio::test]
    async fn coalesce_fills_the_buffer_until_the_inner_stream_would_wait() {
        // Records of 16 KiB, 8 of them available per wake-up; the reader offers 400 KiB.
        let len = 2 * 1024 * 1024;
        let mut r = Coalesce::new(Pieces::new(len, 16 * 1024, 8));
        let (got, sizes) = read_sizes(&mut r, 400 * 1024).await;
        assert_eq!(got, expected(len));
        assert!(sizes.iter().all(|&n| n == 8 * 16 * 1024), "{sizes:?}");
        // Passing through, every record is a read of its own.
        let mut off = Coalesce::with_enabled(Pieces::new(len, 16 * 1024, 8), false);
        let (got, sizes) = read_sizes(&mut off, 400 * 1024).await;
        assert_eq!(got, expected(len));
        assert!(sizes.iter().all(|&n| n == 16 * 1024));
    }

    #[tokio::test]
    async fn coalesce_stops_at_a_full_buffer_and_at_the_end() {
        let len = 100_000;
        let mut r = Coalesce::new(Pieces::new(len, 1000, usize::MAX));
        let (got, sizes) = read_sizes(&mut r, 30_000).await;
        assert_eq!(got, expected(len));
        assert_eq!(sizes, vec![30_000, 30_000, 30_000, 10_000]);
    }

    #[tokio::test]
    async fn coalesce_returns_the_data_before_an_error_then_the_error() {
        let mut inner = Pieces::new(5000, 1000, usize::MAX);
        inner.fail_at_end = true;
        let mut r = Coalesce::new(inner);
        let mut buf = vec![0u8; 64 * 1024];
        let n = r.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &expected(5000)[..]);
        let err = r.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }
}
