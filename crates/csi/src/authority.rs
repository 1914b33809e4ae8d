//! Clients that send the unix socket path as `:authority`.
//!
//! grpc-core (grpc-python, grpc-ruby, … since 1.57), grpc-java and grpc-swift send the socket path of a
//! `unix:` target, percent-encoded or not, as the HTTP/2 `:authority` of every call. That is not an
//! authority (RFC 9113 §8.3.1 wants `host[:port]`), and the h2 crate under tonic refuses the request
//! with `RST_STREAM(PROTOCOL_ERROR)` before any service sees it; h2 has no option to accept it. The
//! kubelet (grpc-go) sends `localhost`, but CSI tools and sanity suites written in Python do not.
//!
//! So the server reads each connection through [`AuthorityFix`]: it follows the client's HTTP/2 frames,
//! decodes every header block (HPACK, with the client's dynamic table), replaces an `:authority` that
//! is not a valid authority with `localhost`, and encodes the block again for h2 as literals without
//! indexing (so h2's decoder table stays empty and never disagrees with ours). Every other frame, and
//! everything the server writes, passes through unchanged.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer accepts (SETTINGS_MAX_FRAME_SIZE's initial value): the rewritten
/// blocks are cut into frames of at most this.
const MAX_FRAME: usize = 16_384;
/// The largest frame or header block read from a client (h2's own limits are lower).
const MAX_BLOCK: usize = 1 << 20;
/// The largest HPACK dynamic table a client may ask for.
const MAX_TABLE: usize = 64 * 1024;
/// What replaces a socket path: what grpc-go sends over unix sockets.
const LOCALHOST: &[u8] = b"localhost";

/// A server-side connection whose client-to-server HTTP/2 header blocks get a valid `:authority`.
pub struct AuthorityFix<T> {
    inner: T,
    rewriter: Rewriter,
    /// Bytes read from the client, not yet processed.
    input: Vec<u8>,
    /// Bytes for h2, from `sent` on.
    output: Vec<u8>,
    sent: usize,
    eof: bool,
}

impl<T> AuthorityFix<T> {
    pub fn new(inner: T) -> Self {
        AuthorityFix {
            inner,
            rewriter: Rewriter::default(),
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            eof: false,
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
            if this.sent < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.sent);
                buf.put_slice(&this.output[this.sent..this.sent + n]);
                this.sent += n;
                if this.sent == this.output.len() {
                    this.output.clear();
                    this.sent = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // An incomplete frame at the end: h2 sees it as it came, and the connection's end.
                if this.input.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.output = std::mem::take(&mut this.input);
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                continue;
            }
            this.input.extend_from_slice(read.filled());
            let used = this.rewriter.process(&this.input, &mut this.output)?;
            this.input.drain(..used);
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
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

/// A header block whose CONTINUATION frames have not all come yet.
struct Pending {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

/// The client-to-server frame rewriter (no I/O: bytes in, bytes out).
pub struct Rewriter {
    preface_left: usize,
    decoder: loona_hpack::Decoder<'static>,
    pending: Option<Pending>,
}

impl Default for Rewriter {
    fn default() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(MAX_TABLE);
        Rewriter {
            preface_left: PREFACE.len(),
            decoder,
            pending: None,
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Rewriter {
    /// Processes the complete frames at the start of `input`, appending what h2 should read to `output`;
    /// returns how many bytes of `input` were used (the rest is an incomplete frame).
    pub fn process(&mut self, input: &[u8], output: &mut Vec<u8>) -> io::Result<usize> {
        let mut used = 0;
        if self.preface_left > 0 {
            let n = self.preface_left.min(input.len());
            output.extend_from_slice(&input[..n]);
            self.preface_left -= n;
            used = n;
        }
        if self.preface_left > 0 {
            return Ok(used);
        }
        while input.len() - used >= FRAME_HEADER {
            let head = &input[used..used + FRAME_HEADER];
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            if len > MAX_BLOCK {
                return Err(invalid(format!(
                    "an HTTP/2 frame of {len} bytes, more than {MAX_BLOCK}"
                )));
            }
            if input.len() - used < FRAME_HEADER + len {
                break;
            }
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let payload = &input[used + FRAME_HEADER..used + FRAME_HEADER + len];
            match kind {
                HEADERS => self.headers(stream, flags, payload, output)?,
                CONTINUATION => self.continuation(stream, flags, payload, output)?,
                _ if self.pending.is_some() => {
                    return Err(invalid(
                        "a frame between a HEADERS frame and its CONTINUATION frames".to_owned(),
                    ));
                }
                _ => output.extend_from_slice(&input[used..used + FRAME_HEADER + len]),
            }
            used += FRAME_HEADER + len;
        }
        Ok(used)
    }

    fn headers(
        &mut self,
        stream: u32,
        flags: u8,
        payload: &[u8],
        output: &mut Vec<u8>,
    ) -> io::Result<()> {
        if self.pending.is_some() {
            return Err(invalid(
                "a HEADERS frame before the previous header block ended".to_owned(),
            ));
        }
        let mut rest = payload;
        if flags & PADDED != 0 {
            let (&pad, after) = rest
                .split_first()
                .ok_or_else(|| invalid("a padded HEADERS frame without its pad length".into()))?;
            let keep = after
                .len()
                .checked_sub(usize::from(pad))
                .ok_or_else(|| invalid("HEADERS padding longer than the frame".into()))?;
            rest = &after[..keep];
        }
        let mut priority = None;
        if flags & PRIORITY != 0 {
            let (fields, after) = rest
                .split_first_chunk::<5>()
                .ok_or_else(|| invalid("a HEADERS frame too short for its priority".into()))?;
            priority = Some(*fields);
            rest = after;
        }
        let pending = Pending {
            stream,
            flags,
            priority,
            block: rest.to_vec(),
        };
        if flags & END_HEADERS != 0 {
            self.emit(pending, output)
        } else {
            self.pending = Some(pending);
            Ok(())
        }
    }

    fn continuation(
        &mut self,
        stream: u32,
        flags: u8,
        payload: &[u8],
        output: &mut Vec<u8>,
    ) -> io::Result<()> {
        let Some(mut pending) = self.pending.take() else {
            return Err(invalid(
                "a CONTINUATION frame without a HEADERS frame".into(),
            ));
        };
        if pending.stream != stream {
            return Err(invalid("a CONTINUATION frame of another stream".into()));
        }
        if pending.block.len() + payload.len() > MAX_BLOCK {
            return Err(invalid(format!(
                "a header block of more than {MAX_BLOCK} bytes"
            )));
        }
        pending.block.extend_from_slice(payload);
        if flags & END_HEADERS != 0 {
            self.emit(pending, output)
        } else {
            self.pending = Some(pending);
            Ok(())
        }
    }

    /// Decodes a whole header block, fixes its `:authority` and writes it as HEADERS (and CONTINUATION)
    /// frames of literals without indexing.
    fn emit(&mut self, pending: Pending, output: &mut Vec<u8>) -> io::Result<()> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.decoder
            .decode_with_cb(&pending.block, |name, value| {
                fields.push((name.into_owned(), value.into_owned()));
            })
            .map_err(|e| invalid(format!("a header block HPACK cannot decode: {e:?}")))?;
        let mut block = Vec::with_capacity(pending.block.len() * 2);
        for (name, value) in &fields {
            let value = if name == b":authority" && !is_authority(value) {
                tracing::debug!(
                    authority = %String::from_utf8_lossy(value),
                    "replacing an :authority that is not one (a socket path) with localhost"
                );
                LOCALHOST
            } else {
                value.as_slice()
            };
            literal(name, value, &mut block)?;
        }
        let mut first = Vec::with_capacity(MAX_FRAME);
        if let Some(priority) = pending.priority {
            first.extend_from_slice(&priority);
        }
        let room = MAX_FRAME - first.len();
        let cut = block.len().min(room);
        first.extend_from_slice(&block[..cut]);
        let mut chunks = block[cut..].chunks(MAX_FRAME).peekable();
        let mut flags = pending.flags & END_STREAM;
        if pending.priority.is_some() {
            flags |= PRIORITY;
        }
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        frame(HEADERS, flags, pending.stream, &first, output);
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_none() {
                END_HEADERS
            } else {
                0
            };
            frame(CONTINUATION, flags, pending.stream, chunk, output);
        }
        Ok(())
    }
}

/// What h2 accepts as `:authority`.
fn is_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// One header field as a literal without indexing, with a literal name (RFC 7541 §6.2.2), strings not
/// Huffman-coded.
fn literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    out.push(0);
    for s in [name, value] {
        loona_hpack::encoder::encode_integer_into(s.len(), 7, 0, out)?;
        out.extend_from_slice(s);
    }
    Ok(())
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_frame(stream: u32, flags: u8, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame(HEADERS, flags, stream, block, &mut out);
        out
    }

    /// A frame read back: its type, stream and (for a header block) its fields.
    type ReadFrame = (u8, u32, Vec<(String, String)>);

    /// Parses `bytes` (after the preface) into frames, and decodes the header blocks with a fresh decoder.
    fn read_back(bytes: &[u8]) -> Vec<ReadFrame> {
        assert!(bytes.starts_with(PREFACE));
        let mut rest = &bytes[PREFACE.len()..];
        let mut decoder = loona_hpack::Decoder::new();
        let mut out = Vec::new();
        let mut block = Vec::new();
        while !rest.is_empty() {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let (kind, flags) = (rest[3], rest[4]);
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            let mut payload = &rest[9..9 + len];
            assert!(len <= MAX_FRAME);
            if kind == HEADERS && flags & PRIORITY != 0 {
                payload = &payload[5..];
            }
            if kind == HEADERS || kind == CONTINUATION {
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    let fields = decoder
                        .decode(&block)
                        .expect("decodable")
                        .into_iter()
                        .map(|(n, v)| {
                            (
                                String::from_utf8(n).expect("name"),
                                String::from_utf8(v).expect("value"),
                            )
                        })
                        .collect();
                    out.push((HEADERS, stream, fields));
                    block.clear();
                }
            } else {
                out.push((kind, stream, Vec::new()));
            }
            rest = &rest[9 + len..];
        }
        out
    }

    fn request(authority: &str) -> Vec<(&'static [u8], Vec<u8>)> {
        vec![
            (b":method", b"POST".to_vec()),
            (b":scheme", b"http".to_vec()),
            (b":path", b"/csi.v1.Identity/GetPluginInfo".to_vec()),
            (b":authority", authority.as_bytes().to_vec()),
            (b"content-type", b"application/grpc".to_vec()),
            (b"te", b"trailers".to_vec()),
        ]
    }

    fn run(input: &[u8], piece: usize) -> Vec<u8> {
        let mut rewriter = Rewriter::default();
        let mut buffered = Vec::new();
        let mut output = Vec::new();
        for chunk in input.chunks(piece) {
            buffered.extend_from_slice(chunk);
            let used = rewriter.process(&buffered, &mut output).expect("valid");
            buffered.drain(..used);
        }
        assert!(buffered.is_empty());
        output
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost_and_the_rest_is_kept() {
        // The client's encoder indexes, so the second request refers to its dynamic table.
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = PREFACE.to_vec();
        frame(0x4, 0, 0, &[], &mut input); // SETTINGS
        for stream in [1u32, 3] {
            let fields = request("%2Ftmp%2Fcsi.sock");
            let block = encoder.encode(fields.iter().map(|(n, v)| (*n, v.as_slice())));
            input.extend(headers_frame(stream, END_HEADERS, &block));
            frame(0x0, END_STREAM, stream, b"\0\0\0\0\0", &mut input); // DATA
        }
        // A valid authority is kept as it is.
        let block = encoder.encode(
            request("localhost:10000")
                .iter()
                .map(|(n, v)| (*n, v.as_slice())),
        );
        input.extend(headers_frame(5, END_HEADERS | END_STREAM, &block));

        for piece in [1, 7, 4096] {
            let frames = read_back(&run(&input, piece));
            assert_eq!(frames.len(), 6, "{frames:?}");
            assert_eq!(frames[0].0, 0x4);
            for (i, stream) in [(1, 1), (3, 3)] {
                let (_, s, fields) = &frames[i];
                assert_eq!(*s, stream);
                assert!(fields.contains(&(":authority".into(), "localhost".into())));
                assert!(
                    fields.contains(&(":path".into(), "/csi.v1.Identity/GetPluginInfo".into()))
                );
                assert_eq!(fields.len(), 6);
                assert_eq!(frames[i + 1].0, 0x0);
            }
            assert!(
                frames[5]
                    .2
                    .contains(&(":authority".into(), "localhost:10000".into()))
            );
        }
    }

    #[test]
    fn padding_priority_and_continuations_are_followed() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut fields = request("/var/lib/kubelet/plugins/csi.sock");
        let big = vec![b'x'; 40_000];
        fields.push((b"x-big", big.clone()));
        let block = encoder.encode(fields.iter().map(|(n, v)| (*n, v.as_slice())));
        // padded, with priority, its block cut in three
        let mut first = vec![3u8];
        first.extend_from_slice(&[0, 0, 0, 0, 16]);
        first.extend_from_slice(&block[..100]);
        first.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        frame(HEADERS, PADDED | PRIORITY, 1, &first, &mut input);
        frame(CONTINUATION, 0, 1, &block[100..20_000], &mut input);
        frame(CONTINUATION, END_HEADERS, 1, &block[20_000..], &mut input);
        let frames = read_back(&run(&input, 1000));
        assert_eq!(frames.len(), 1);
        let fields = &frames[0].2;
        assert!(fields.contains(&(":authority".into(), "localhost".into())));
        assert!(fields.contains(&("x-big".into(), String::from_utf8(big).expect("ascii"))));
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        let mut input = PREFACE.to_vec();
        frame(CONTINUATION, END_HEADERS, 1, b"abc", &mut input);
        assert!(
            Rewriter::default()
                .process(&input, &mut Vec::new())
                .is_err()
        );

        let mut input = PREFACE.to_vec();
        frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff], &mut input);
        assert!(
            Rewriter::default()
                .process(&input, &mut Vec::new())
                .is_err()
        );

        let mut input = PREFACE.to_vec();
        frame(HEADERS, PADDED | END_HEADERS, 1, &[9, 1], &mut input);
        assert!(
            Rewriter::default()
                .process(&input, &mut Vec::new())
                .is_err()
        );

        // Arbitrary bytes after the preface: never a panic.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            let mut input = PREFACE.to_vec();
            for _ in 0..64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.push(seed as u8);
            }
            // small lengths, so that frames complete
            input[PREFACE.len()] = 0;
            input[PREFACE.len() + 1] = 0;
            input[PREFACE.len() + 2] %= 48;
            input[PREFACE.len() + 3] %= 10;
            let _ = Rewriter::default().process(&input, &mut Vec::new());
        }
    }
}
