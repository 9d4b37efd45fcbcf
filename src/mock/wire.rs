//! A thin layer between h2 and the TLS stream that sends the HTTP/2 frames
//! h2's server API cannot: a SETTINGS frame changing MAX_CONCURRENT_STREAMS
//! mid-connection (Apple lowers it to 1), and a single GOAWAY whose
//! last-stream-id is the last stream the mock processed, with Apple's JSON
//! debug data (h2's own GOAWAY names the last stream *received* and carries
//! no debug data).
//!
//! It can also make the connection go silent, like a hung server whose kernel
//! still holds the TCP connection open: from then on nothing the client sends
//! reaches h2 and nothing h2 writes leaves (no answers, no PING ACKs).
//!
//! It tracks frame boundaries in both directions, so frames are only ever
//! inserted between h2's frames (never inside a header block), h2's own
//! GOAWAY frames are dropped once ours is out (a second one must not raise
//! the last-stream-id), and the client's ACKs to our SETTINGS are kept from
//! h2, which did not send them.

use bytes::{Buf, BufMut, BytesMut};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const HEADER_LEN: usize = 9;
const CLIENT_PREFACE_LEN: usize = 24;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_PUSH_PROMISE: u8 = 0x5;
const TYPE_GOAWAY: u8 = 0x7;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// Stop taking h2's output while this much is waiting for the socket.
const HIGH_WATER: usize = 256 * 1024;

enum Frame {
    Limit(u32),
    GoAway {
        last_stream_id: u32,
        debug: &'static [u8],
    },
}

#[derive(Default)]
struct TapState {
    queued: Vec<Frame>,
    /// One entry per SETTINGS frame sent, in order: the limit if it was ours.
    settings_sent: VecDeque<Option<u32>>,
    acked_limit: Option<u32>,
    goaway_sent: bool,
}

/// The connection task's handle on its `Wire`.
#[derive(Default)]
pub struct Tap {
    state: Mutex<TapState>,
    queued: AtomicBool,
    silent: AtomicBool,
}

impl Tap {
    /// Announce SETTINGS_MAX_CONCURRENT_STREAMS = `limit` at the next frame boundary.
    pub fn announce_limit(&self, limit: u32) {
        self.queue(Frame::Limit(limit));
    }

    /// Send GOAWAY(NO_ERROR, `last_stream_id`, `debug`) at the next frame boundary.
    pub fn goaway(&self, last_stream_id: u32, debug: &'static [u8]) {
        self.queue(Frame::GoAway {
            last_stream_id,
            debug,
        });
    }

    /// The stream limit to hold the client to, once it acknowledged one of
    /// ours: a lower limit binds from its ACK on, a higher one from when it is
    /// sent (RFC 9113 §6.5.3: the client may use it before its ACK arrives).
    pub fn enforced_limit(&self) -> Option<u32> {
        let state = self.state.lock();
        let pending = state.settings_sent.iter().flatten().copied();
        state.acked_limit.map(|acked| pending.fold(acked, u32::max))
    }

    /// Stop reading and answering for good; only the client closing the
    /// connection (read as end of input for h2) ends it.
    pub fn go_silent(&self) {
        self.silent.store(true, Ordering::Release);
    }

    fn is_silent(&self) -> bool {
        self.silent.load(Ordering::Acquire)
    }

    fn queue(&self, frame: Frame) {
        self.state.lock().queued.push(frame);
        self.queued.store(true, Ordering::Release);
    }
}

#[derive(Default)]
struct WriteParse {
    header: [u8; HEADER_LEN],
    header_len: usize,
    payload_left: usize,
    dropping: bool,
    in_header_block: bool,
    frames: u64,
}

struct ReadParse {
    /// Reused for every read (a fresh zeroed array per read shows in profiles).
    chunk: Box<[u8]>,
    buf: BytesMut,
    /// Bytes at the front of `buf` that may be handed to h2.
    ready: usize,
    preface_left: usize,
    payload_left: usize,
    eof: bool,
}

pub struct Wire<S> {
    io: S,
    tap: Arc<Tap>,
    out: BytesMut,
    /// Frames were injected while h2 was idle and may still sit in `out`.
    unflushed_injection: bool,
    w: WriteParse,
    r: ReadParse,
}

impl<S> Wire<S> {
    pub fn new(io: S) -> (Wire<S>, Arc<Tap>) {
        let tap = Arc::new(Tap::default());
        let wire = Wire {
            io,
            tap: tap.clone(),
            out: BytesMut::with_capacity(16 * 1024),
            unflushed_injection: false,
            w: WriteParse::default(),
            r: ReadParse {
                chunk: vec![0; 16 * 1024].into_boxed_slice(),
                buf: BytesMut::with_capacity(16 * 1024),
                ready: 0,
                preface_left: CLIENT_PREFACE_LEN,
                payload_left: 0,
                eof: false,
            },
        };
        (wire, tap)
    }

    fn at_boundary(&self) -> bool {
        self.w.header_len == 0 && self.w.payload_left == 0
    }

    /// Appends queued frames to the output if h2's preface (its first
    /// SETTINGS) is out and no header block is open.
    fn inject_due(&mut self) {
        if self.w.frames == 0 || self.w.in_header_block || !self.tap.queued.load(Ordering::Acquire)
        {
            return;
        }
        let mut state = self.tap.state.lock();
        self.tap.queued.store(false, Ordering::Release);
        for frame in std::mem::take(&mut state.queued) {
            match frame {
                Frame::Limit(limit) => {
                    put_header(&mut self.out, 6, TYPE_SETTINGS, 0);
                    self.out.put_u16(SETTINGS_MAX_CONCURRENT_STREAMS);
                    self.out.put_u32(limit);
                    state.settings_sent.push_back(Some(limit));
                }
                Frame::GoAway {
                    last_stream_id,
                    debug,
                } if !state.goaway_sent => {
                    put_header(&mut self.out, 8 + debug.len(), TYPE_GOAWAY, 0);
                    self.out.put_u32(last_stream_id & 0x7fff_ffff);
                    self.out.put_u32(0);
                    self.out.put_slice(debug);
                    state.goaway_sent = true;
                }
                Frame::GoAway { .. } => {}
            }
        }
    }

    /// Takes h2's output frame by frame into `out`.
    fn take_output(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            if self.w.payload_left > 0 {
                let n = self.w.payload_left.min(buf.len());
                if !self.w.dropping {
                    self.out.extend_from_slice(&buf[..n]);
                }
                self.w.payload_left -= n;
                buf = &buf[n..];
                continue;
            }
            if self.w.header_len == 0 {
                self.inject_due();
            }
            let n = (HEADER_LEN - self.w.header_len).min(buf.len());
            self.w.header[self.w.header_len..self.w.header_len + n].copy_from_slice(&buf[..n]);
            self.w.header_len += n;
            buf = &buf[n..];
            if self.w.header_len < HEADER_LEN {
                break;
            }
            self.w.header_len = 0;
            let h = self.w.header;
            let (len, kind, flags) = parse_header(&h);
            self.w.payload_left = len;
            self.w.dropping = kind == TYPE_GOAWAY && self.tap.state.lock().goaway_sent;
            if self.w.dropping {
                continue;
            }
            self.out.extend_from_slice(&h);
            self.w.frames += 1;
            match kind {
                TYPE_HEADERS | TYPE_PUSH_PROMISE | TYPE_CONTINUATION => {
                    self.w.in_header_block = flags & FLAG_END_HEADERS == 0;
                }
                TYPE_SETTINGS if flags & FLAG_ACK == 0 => {
                    self.tap.state.lock().settings_sent.push_back(None);
                }
                _ => {}
            }
        }
    }

    /// Walks the client's frames, removing the ACKs that answer our SETTINGS.
    fn scan_input(&mut self) {
        let r = &mut self.r;
        loop {
            let avail = r.buf.len() - r.ready;
            if avail == 0 {
                return;
            }
            let skip = if r.preface_left > 0 {
                &mut r.preface_left
            } else if r.payload_left > 0 {
                &mut r.payload_left
            } else {
                if avail < HEADER_LEN {
                    return;
                }
                let (len, kind, flags) = parse_header(&r.buf[r.ready..r.ready + HEADER_LEN]);
                if kind == TYPE_SETTINGS && flags & FLAG_ACK != 0 {
                    let mut state = self.tap.state.lock();
                    if let Some(Some(limit)) = state.settings_sent.pop_front() {
                        state.acked_limit = Some(limit);
                        let rest = r.buf.split_off(r.ready + HEADER_LEN);
                        r.buf.truncate(r.ready);
                        r.buf.unsplit(rest);
                        continue;
                    }
                }
                r.ready += HEADER_LEN;
                r.payload_left = len;
                continue;
            };
            let n = (*skip).min(avail);
            *skip -= n;
            r.ready += n;
        }
    }
}

impl<S: AsyncRead + Unpin> Wire<S> {
    /// Reads and discards the client's bytes until it closes the connection.
    fn poll_discard_input(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.r.buf.clear();
        self.r.ready = 0;
        loop {
            let mut chunk = ReadBuf::new(&mut self.r.chunk);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut chunk))?;
            if chunk.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Wire<S> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Sends queued frames even when h2 has nothing to write.
    fn poll_idle_inject(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.at_boundary() && self.tap.queued.load(Ordering::Acquire) {
            self.inject_due();
            self.unflushed_injection = true;
        }
        // Until it is out, retried on every poll (a Pending here has
        // registered h2's task to be woken when the socket is writable).
        if self.unflushed_injection {
            if let Poll::Ready(r) = self.poll_drain(cx) {
                r?;
                if let Poll::Ready(r) = Pin::new(&mut self.io).poll_flush(cx) {
                    r?;
                    self.unflushed_injection = false;
                }
            }
        }
        Ok(())
    }
}

fn parse_header(h: &[u8]) -> (usize, u8, u8) {
    let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
    (len, h[3], h[4])
}

fn put_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8) {
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(0);
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Wire<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tap.is_silent() {
            return this.poll_discard_input(cx);
        }
        // h2 polls reads whenever its task runs, so this is where frames
        // queued while h2 had nothing to write go out.
        this.poll_idle_inject(cx)?;
        loop {
            if this.r.ready > 0 {
                let n = this.r.ready.min(dst.remaining());
                dst.put_slice(&this.r.buf[..n]);
                this.r.buf.advance(n);
                this.r.ready -= n;
                return Poll::Ready(Ok(()));
            }
            if this.r.eof {
                // A partial frame at EOF goes to h2 as is: it reports the error.
                this.r.ready = this.r.buf.len();
                if this.r.ready == 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let mut chunk = ReadBuf::new(&mut this.r.chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut chunk))?;
            let n = chunk.filled().len();
            if n == 0 {
                this.r.eof = true;
            } else {
                this.r.buf.extend_from_slice(&this.r.chunk[..n]);
                this.scan_input();
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Wire<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.tap.is_silent() {
            this.out.clear();
            return Poll::Ready(Ok(buf.len()));
        }
        if this.out.len() >= HIGH_WATER {
            ready!(this.poll_drain(cx))?;
        }
        this.take_output(buf);
        // What the socket does not take now goes on the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tap.is_silent() {
            return Poll::Ready(Ok(()));
        }
        if this.at_boundary() {
            this.inject_due();
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tap.is_silent() {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    const PING: u8 = 0x6;

    /// h2's output, written a byte at a time, with our frames requested at
    /// awkward moments; then the client's answer, read back through the Wire.
    #[tokio::test]
    async fn frames_go_in_between_h2_frames_and_our_acks_are_kept_from_h2() {
        let (io, mut peer) = tokio::io::duplex(64 * 1024);
        let (mut wire, tap) = Wire::new(io);
        let h2_settings = frame(TYPE_SETTINGS, 0, 0, &[0, 3, 0, 0, 3, 0xe8]);
        let headers = frame(TYPE_HEADERS, 0, 1, b"abc");
        let continuation = frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, b"def");
        let h2_goaway = frame(TYPE_GOAWAY, 0, 0, &[0, 0, 0, 9, 0, 0, 0, 0]);
        let ping = frame(PING, 0, 0, b"12345678");

        // Before h2's own SETTINGS (the server preface): must wait for it.
        tap.announce_limit(1);
        for chunk in [&h2_settings, &headers] {
            for byte in chunk.iter() {
                wire.write_all(&[*byte]).await.unwrap();
            }
        }
        // Inside a header block: must wait for its end.
        tap.goaway(1, b"{}");
        for chunk in [&continuation, &h2_goaway, &ping] {
            for byte in chunk.iter() {
                wire.write_all(&[*byte]).await.unwrap();
            }
        }
        wire.flush().await.unwrap();

        let ours_settings = frame(TYPE_SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 1]);
        let ours_goaway = frame(TYPE_GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0, b'{', b'}']);
        let expected = [
            h2_settings,
            ours_settings,
            headers,
            continuation,
            ours_goaway,
            ping.clone(),
        ]
        .concat();
        let mut sent = vec![0; expected.len()];
        peer.read_exact(&mut sent).await.unwrap();
        assert_eq!(sent, expected, "h2's own GOAWAY dropped, ours in place");

        // The client ACKs both SETTINGS frames, in order, a byte at a time.
        assert_eq!(tap.enforced_limit(), None, "not acknowledged yet");
        let ack = frame(TYPE_SETTINGS, FLAG_ACK, 0, &[]);
        let incoming = [
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            ack.clone(),
            ack.clone(),
            ping.clone(),
        ]
        .concat();
        let writer = tokio::spawn(async move {
            for byte in incoming {
                peer.write_all(&[byte]).await.unwrap();
                tokio::task::yield_now().await;
            }
            peer
        });
        let expected = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), ack, ping].concat();
        let mut received = vec![0; expected.len()];
        wire.read_exact(&mut received).await.unwrap();
        assert_eq!(
            received, expected,
            "only the ACK to h2's SETTINGS reaches h2"
        );
        assert_eq!(tap.enforced_limit(), Some(1));
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn a_silent_wire_passes_nothing_either_way_until_the_client_closes() {
        let (io, mut peer) = tokio::io::duplex(64 * 1024);
        let (mut wire, tap) = Wire::new(io);
        let ping = frame(PING, 0, 0, b"12345678");
        wire.write_all(&ping).await.unwrap();
        wire.flush().await.unwrap();
        let mut got = vec![0; ping.len()];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, ping, "not silent yet");

        tap.go_silent();
        tap.goaway(1, b"{}");
        wire.write_all(&ping).await.unwrap();
        wire.flush().await.unwrap();
        peer.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        peer.write_all(&ping).await.unwrap();
        peer.shutdown().await.unwrap();
        let mut to_h2 = Vec::new();
        wire.read_to_end(&mut to_h2).await.unwrap();
        assert!(to_h2.is_empty(), "h2 sees only the end of input");
        drop(wire);
        let mut to_client = Vec::new();
        peer.read_to_end(&mut to_client).await.unwrap();
        assert!(to_client.is_empty(), "nothing left after silence");
    }

    #[test]
    fn a_raised_limit_binds_at_once_a_lowered_one_after_its_ack() {
        let tap = Tap::default();
        let with = |acked: Option<u32>, pending: &[Option<u32>]| {
            let mut state = tap.state.lock();
            state.acked_limit = acked;
            state.settings_sent = pending.iter().copied().collect();
            drop(state);
            tap.enforced_limit()
        };
        assert_eq!(with(None, &[Some(1)]), None, "h2's own limit until an ACK");
        assert_eq!(with(Some(1), &[Some(1000)]), Some(1000));
        assert_eq!(with(Some(1000), &[Some(1)]), Some(1000));
        assert_eq!(with(Some(1), &[None]), Some(1));
    }
}
