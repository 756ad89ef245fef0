//! Accepting the `:authority` etcd 3.4 clients send.
//!
//! etcdctl 3.4 (clientv3 3.4) dials an endpoint given as a URL
//! (`http://host:port`) for its Maintenance calls with the URL itself as
//! the HTTP/2 `:authority`. grpc-go servers accept that; the `h2` crate
//! under tonic refuses the stream as malformed (`RST_STREAM
//! PROTOCOL_ERROR`), so `etcdctl --endpoints=http://… endpoint status`
//! would fail against sett.
//!
//! [`AuthorityFix`] wraps each accepted client connection and rewrites
//! the request headers on their way in: every header block (a `HEADERS`
//! frame and its `CONTINUATION`s) is decoded with HPACK, an `:authority`
//! holding `scheme://` is cut down to its `host:port`, and the block is
//! encoded again with a per-connection encoder (whose dynamic table the
//! server's decoder mirrors, since every block passes through it). Padding
//! and the deprecated priority fields of `HEADERS` are dropped; every other
//! frame passes through unchanged. A connection that does not start with
//! the HTTP/2 preface passes through untouched.

use loona_hpack::{Decoder, Encoder};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface of HTTP/2.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame header length.
const FRAME_HEADER: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Largest frame payload we emit: the HTTP/2 minimum every peer accepts.
const MAX_EMIT_PAYLOAD: usize = 16_384;
/// Largest header block we assemble (a client sending more is refused).
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the connection preface.
    Preface,
    /// Parsing HTTP/2 frames.
    Frames,
    /// Not HTTP/2 (or given up): bytes pass through.
    PassThrough,
}

/// A header block being assembled from `HEADERS` + `CONTINUATION`s.
struct Pending {
    stream_id: u32,
    end_stream: bool,
    block: Vec<u8>,
}

/// A client connection whose request header blocks are rewritten; see the
/// module docs.
pub struct AuthorityFix<T> {
    inner: T,
    mode: Mode,
    /// Bytes read from `inner` and not yet parsed.
    raw: Vec<u8>,
    /// Bytes ready for the reader, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    pending: Option<Pending>,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    eof: bool,
}

impl<T> std::fmt::Debug for AuthorityFix<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityFix")
            .field("mode", &self.mode)
            .field("buffered", &self.raw.len())
            .finish_non_exhaustive()
    }
}

fn protocol_error(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// `host:port` of an authority given as a URL, or `None` when it is not
/// one.
fn fixed_authority(value: &[u8]) -> Option<Vec<u8>> {
    let at = value.windows(3).position(|w| w == b"://")?;
    let rest = &value[at + 3..];
    let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    Some(rest[..end].to_vec())
}

impl<T> AuthorityFix<T> {
    /// Wraps an accepted connection.
    pub fn new(inner: T) -> AuthorityFix<T> {
        AuthorityFix {
            inner,
            mode: Mode::Preface,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            pending: None,
            decoder: Decoder::new(),
            encoder: Encoder::new(),
            eof: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Moves what can be parsed from `raw` to `out`.
    fn process(&mut self) -> io::Result<()> {
        if self.mode == Mode::Preface {
            let n = self.raw.len().min(PREFACE.len());
            if self.raw[..n] != PREFACE[..n] {
                self.mode = Mode::PassThrough;
            } else if n == PREFACE.len() {
                self.out.extend_from_slice(PREFACE);
                self.raw.drain(..PREFACE.len());
                self.mode = Mode::Frames;
            } else {
                return Ok(());
            }
        }
        if self.mode == Mode::PassThrough {
            self.out.append(&mut self.raw);
            return Ok(());
        }
        let mut pos = 0;
        while self.raw.len() - pos >= FRAME_HEADER {
            let h = &self.raw[pos..pos + FRAME_HEADER];
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let (kind, flags) = (h[3], h[4]);
            let stream_id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            if self.raw.len() - pos < FRAME_HEADER + len {
                break;
            }
            let payload = pos + FRAME_HEADER..pos + FRAME_HEADER + len;
            match kind {
                TYPE_HEADERS => {
                    let mut p = &self.raw[payload.clone()];
                    if flags & FLAG_PADDED != 0 {
                        let pad =
                            usize::from(*p.first().ok_or_else(|| protocol_error("bad padding"))?);
                        if pad + 1 > p.len() {
                            return Err(protocol_error("bad padding"));
                        }
                        p = &p[1..p.len() - pad];
                    }
                    if flags & FLAG_PRIORITY != 0 {
                        p = p.get(5..).ok_or_else(|| protocol_error("bad priority"))?;
                    }
                    self.pending = Some(Pending {
                        stream_id,
                        end_stream: flags & FLAG_END_STREAM != 0,
                        block: p.to_vec(),
                    });
                    if flags & FLAG_END_HEADERS != 0 {
                        self.finish_block()?;
                    }
                }
                TYPE_CONTINUATION => {
                    let pending = self
                        .pending
                        .as_mut()
                        .ok_or_else(|| protocol_error("CONTINUATION without HEADERS"))?;
                    pending.block.extend_from_slice(&self.raw[payload.clone()]);
                    if pending.block.len() > MAX_HEADER_BLOCK {
                        return Err(protocol_error("header block too large"));
                    }
                    if flags & FLAG_END_HEADERS != 0 {
                        self.finish_block()?;
                    }
                }
                _ => self.out.extend_from_slice(&self.raw[pos..payload.end]),
            }
            pos = payload.end;
        }
        self.raw.drain(..pos);
        Ok(())
    }

    /// Decodes the pending block, fixes `:authority`, and emits it again.
    fn finish_block(&mut self) -> io::Result<()> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let mut headers = self
            .decoder
            .decode(&p.block)
            .map_err(|e| protocol_error(format!("header block: {e:?}")))?;
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority" {
                if let Some(fixed) = fixed_authority(value) {
                    *value = fixed;
                }
            }
        }
        let block = self
            .encoder
            .encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let mut chunks = block.chunks(MAX_EMIT_PAYLOAD).peekable();
        let mut first = true;
        loop {
            let chunk = chunks.next().unwrap_or(&[]);
            let last = chunks.peek().is_none();
            let mut flags = if last { FLAG_END_HEADERS } else { 0 };
            let kind = if first {
                if p.end_stream {
                    flags |= FLAG_END_STREAM;
                }
                TYPE_HEADERS
            } else {
                TYPE_CONTINUATION
            };
            let len = chunk.len();
            self.out.extend_from_slice(&[
                (len >> 16) as u8,
                (len >> 8) as u8,
                len as u8,
                kind,
                flags,
            ]);
            self.out.extend_from_slice(&p.stream_id.to_be_bytes());
            self.out.extend_from_slice(chunk);
            first = false;
            if last {
                return Ok(());
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityFix<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.out_pos);
                buf.put_slice(&this.out[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.out.len() {
                    this.out.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // Whatever is left unparsed is a torn frame: drop it, as
                // the peer would have.
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            if rb.filled().is_empty() {
                this.eof = true;
                if this.mode == Mode::Preface {
                    this.out.append(&mut this.raw);
                }
                continue;
            }
            this.raw.extend_from_slice(rb.filled());
            this.process()?;
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<T> {
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

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<T>
{
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    type Headers = Vec<(Vec<u8>, Vec<u8>)>;
    /// A decoded header block: stream id, END_STREAM, headers.
    type Block = (u32, bool, Headers);

    /// Parses `bytes` (after the preface) into frames and decodes every
    /// header block: (stream, end_stream, headers) plus other frames.
    fn decode_all(bytes: &[u8]) -> (Vec<Block>, Vec<Vec<u8>>) {
        assert!(bytes.starts_with(PREFACE));
        let mut rest = &bytes[PREFACE.len()..];
        let mut dec = Decoder::new();
        let (mut blocks, mut others) = (Vec::new(), Vec::new());
        let mut cur: Option<(u32, bool, Vec<u8>)> = None;
        while !rest.is_empty() {
            let len =
                (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            let (kind, flags) = (rest[3], rest[4]);
            let sid = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            let payload = &rest[9..9 + len];
            match kind {
                TYPE_HEADERS => cur = Some((sid, flags & FLAG_END_STREAM != 0, payload.to_vec())),
                TYPE_CONTINUATION => cur.as_mut().unwrap().2.extend_from_slice(payload),
                _ => others.push(rest[..9 + len].to_vec()),
            }
            if matches!(kind, TYPE_HEADERS | TYPE_CONTINUATION) && flags & FLAG_END_HEADERS != 0 {
                let (s, e, b) = cur.take().unwrap();
                blocks.push((s, e, dec.decode(&b).unwrap()));
            }
            rest = &rest[9 + len..];
        }
        (blocks, others)
    }

    async fn run(input: Vec<u8>) -> Vec<u8> {
        let mut fix = AuthorityFix::new(&input[..]);
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.unwrap();
        out
    }

    fn request(enc: &mut Encoder<'_>, authority: &[u8], path: &[u8]) -> Vec<u8> {
        enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":authority", authority),
            (b":path", path),
            (b"te", b"trailers"),
        ])
    }

    #[tokio::test]
    async fn url_authorities_become_host_port_and_the_rest_is_unchanged() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        input.extend_from_slice(&settings);
        // A URL authority, padded and with priority fields.
        let block = request(
            &mut enc,
            b"http://127.0.0.1:2379",
            b"/etcdserverpb.Maintenance/Status",
        );
        let mut padded = vec![2u8, 0, 0, 0, 0, 16];
        padded.extend_from_slice(&block);
        padded.extend_from_slice(&[0, 0]);
        input.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY,
            1,
            &padded,
        ));
        let data = frame(0x0, FLAG_END_STREAM, 1, &[0, 0, 0, 0, 0]);
        input.extend_from_slice(&data);
        // A plain authority split over HEADERS + CONTINUATION, reusing the
        // client's dynamic table.
        let block = request(&mut enc, b"127.0.0.1:2379", b"/etcdserverpb.KV/Range");
        let (a, b) = block.split_at(block.len() / 2);
        input.extend(frame(TYPE_HEADERS, FLAG_END_STREAM, 3, a));
        input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 3, b));
        // The same URL authority again (now indexed in the client's table).
        let block = request(
            &mut enc,
            b"http://127.0.0.1:2379",
            b"/etcdserverpb.Maintenance/Status",
        );
        input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 5, &block));

        let out = run(input).await;
        let (blocks, others) = decode_all(&out);
        assert_eq!(others, vec![settings, data]);
        assert_eq!(blocks.len(), 3);
        let authority = |h: &Headers| {
            h.iter()
                .find(|(n, _)| n == b":authority")
                .unwrap()
                .1
                .clone()
        };
        for (i, (sid, end_stream, headers)) in blocks.iter().enumerate() {
            assert_eq!(authority(headers), b"127.0.0.1:2379");
            assert_eq!(headers.len(), 5);
            assert_eq!(*sid, [1, 3, 5][i]);
            assert_eq!(*end_stream, i == 1);
        }
        assert_eq!(blocks[1].2[3].1, b"/etcdserverpb.KV/Range");
    }

    #[tokio::test]
    async fn non_http2_bytes_pass_through() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(run(input.clone()).await, input);
    }

    #[test]
    fn authority_rewrite_rule() {
        assert_eq!(fixed_authority(b"http://h:1").unwrap(), b"h:1");
        assert_eq!(fixed_authority(b"https://h:1/x").unwrap(), b"h:1");
        assert_eq!(fixed_authority(b"h:1"), None);
    }
}
