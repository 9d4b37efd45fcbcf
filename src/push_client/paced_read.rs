//! A connection's incoming bytes handed to HTTP/2 a slice per scheduler turn.
//!
//! h2 reads every frame the socket holds before it writes again, and the
//! answers it reads only turn into new requests after the connection task
//! yields. With many streams in flight the server answers in bursts, so the
//! client took a whole burst in, then sent the whole next burst out, while the
//! server sat idle in between: client and server took turns, and each push cost
//! the sum of both sides' work. Yielding after `TURN_BYTES` lets h2 flush the
//! requests the first answers made room for while the rest are still being
//! read, so both sides work at once (on one connection to the mock, 1.5–1.8×
//! the pushes per second; see docs/performance.md).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A few dozen answers (a HEADERS frame with `apns-id` is ~40 bytes). Measured on
/// one connection with 100 streams in flight: 512 and 1024 equally good, 2048
/// worse, 4096 (a whole burst) no better than no bound.
const TURN_BYTES: usize = 1024;

pub(crate) struct PacedRead<T> {
    inner: T,
    read_this_turn: usize,
}

impl<T> PacedRead<T> {
    pub fn new(inner: T) -> Self {
        PacedRead {
            inner,
            read_this_turn: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PacedRead<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read_this_turn >= TURN_BYTES {
            // Yield: the task is polled again after the ones this turn woke.
            self.read_this_turn = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut chunk = [0u8; TURN_BYTES];
        let room = (TURN_BYTES - self.read_this_turn).min(buf.remaining());
        let mut limited = ReadBuf::new(&mut chunk[..room]);
        match Pin::new(&mut self.inner).poll_read(cx, &mut limited) {
            Poll::Ready(Ok(())) => {
                buf.put_slice(limited.filled());
                self.read_this_turn += limited.filled().len();
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                self.read_this_turn = 0;
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PacedRead<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn yields_after_each_turn_and_loses_nothing() {
        let input: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut reader = PacedRead::new(&input[..]);
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let (mut out, mut yields, mut reads) = (Vec::new(), 0, Vec::new());
        loop {
            let mut space = [0u8; 8192];
            let mut buf = ReadBuf::new(&mut space);
            match Pin::new(&mut reader).poll_read(&mut cx, &mut buf) {
                Poll::Pending => yields += 1,
                Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
                Poll::Ready(Ok(())) => {
                    reads.push(buf.filled().len());
                    out.extend_from_slice(buf.filled());
                }
                Poll::Ready(Err(e)) => panic!("{e}"),
            }
        }
        assert_eq!(out, input);
        assert_eq!(reads, [TURN_BYTES, TURN_BYTES, 3000 - 2 * TURN_BYTES]);
        assert_eq!(yields, 2, "one yield after each full turn");
        assert_eq!(
            counter.0.load(Ordering::Relaxed),
            2,
            "each yield wakes the task"
        );
    }
}
