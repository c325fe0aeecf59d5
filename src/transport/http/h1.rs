//! A lean HTTP/1.1 client connection for plain-TCP keep-alive targets, the
//! generator's hot path.
//!
//! hyper's client connection runs as its own task behind a channel: each
//! heartbeat crossed from the worker to that task and its answer crossed
//! back, and the request's `HeaderMap` was cloned and encoded every time.
//! Here the worker's exchange future owns the socket: it writes the
//! request (a head encoded once per target, with only `Content-Length`
//! added, and the body) with one write, then reads the answer to its end
//! with `httparse` (hyper's own parser) and a small body reader
//! (`Content-Length`, chunked, or to the end of the connection). Nothing
//! polls a connection between heartbeats, so before reuse
//! [`Conn::is_closed`] asks the socket whether the server closed it
//! meanwhile (a non-blocking read that tokio answers from its cached
//! readiness when nothing has arrived).
//!
//! TLS and HTTP/2 stay with hyper (see the parent module).

use std::cell::RefCell;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most header lines an answer may have (hyper's default too).
const MAX_HEADERS: usize = 100;
/// The longest answer head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Read in steps of this much at least.
const READ_CHUNK: usize = 4096;

/// What the answer was, once read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After` in whole seconds, when the answer had one.
    pub retry_after: Option<u64>,
    /// Whether the connection may carry the next request.
    pub reusable: bool,
    /// When the answer's last bytes reached this machine, by the kernel's
    /// receive stamp ([`crate::transport::arrival`]), if the socket had one.
    pub arrived: Option<std::time::Instant>,
    /// An error answer's (status 400 and up) first [`EXCERPT`] bytes of
    /// body, kept as they are read past (no read more): what the first
    /// answer of each status says in the summary. `None` below 400, so
    /// successes keep nothing.
    pub excerpt: Option<Box<[u8]>>,
}

/// The most of an error answer's body kept in [`Answer::excerpt`].
pub const EXCERPT: usize = 256;

/// Adds what of `bytes` fits to the excerpt being kept, if one is.
fn keep(excerpt: &mut Option<Vec<u8>>, bytes: &[u8]) {
    if let Some(e) = excerpt {
        let room = EXCERPT.saturating_sub(e.len());
        e.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection broke: reset, broken pipe, or closed before any of the answer.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The connection closed before the answer began.
    #[error("the server closed the connection without answering")]
    ClosedBeforeAnswer,
    /// The answer was not HTTP/1.x, or was cut short.
    #[error("{0}")]
    Protocol(String),
}

/// One HTTP/1.1 connection: the socket. Its buffer is lent for each
/// exchange ([`Lease`]): a connection idle between heartbeats (every
/// per-device one, most of the time) holds none.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
}

thread_local! {
    /// Buffers of the exchanges this thread is not running now.
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// The most spare buffers a thread keeps; beyond them, freed.
const MAX_SPARE: usize = 1024;
/// A buffer that grew beyond this (a long answer) is freed, not kept.
const MAX_KEPT: usize = 4 * READ_CHUNK;

/// A buffer lent to one exchange, from the thread's spares (or new), and
/// given back when the exchange ends, however it ends. Memory for buffers
/// then follows the exchanges in flight, not the connections open: 15,000
/// idle per-device connections held 4 KB each when every connection kept
/// its own.
struct Lease(Vec<u8>);

impl Lease {
    fn take() -> Lease {
        let spare = SPARE.try_with(|s| s.borrow_mut().pop()).ok().flatten();
        Lease(spare.unwrap_or_else(|| Vec::with_capacity(READ_CHUNK)))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        if buf.capacity() > MAX_KEPT {
            return;
        }
        buf.clear();
        // At thread exit the spares are gone: the buffer is simply freed.
        let _ = SPARE.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < MAX_SPARE {
                s.push(buf);
            }
        });
    }
}

impl Conn {
    /// A connection whose answers are timed by the kernel's receive stamps
    /// where it gives them ([`crate::transport::arrival`]).
    pub fn new(stream: TcpStream) -> Conn {
        crate::transport::arrival::enable(&stream);
        Conn { stream }
    }

    /// Whether the server closed the connection (or sent something
    /// unasked, which makes it unusable) since the last answer.
    pub fn is_closed(&self) -> bool {
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            // End of stream, unasked bytes, or an error.
            _ => true,
        }
    }

    /// Sends one request (`head` ends just before the `Content-Length`
    /// value; see [`encode_head`]) and reads its answer to the end, with
    /// when it arrived.
    pub async fn exchange(&mut self, head: &[u8], body: &[u8]) -> Result<Answer, Error> {
        let mut lease = Lease::take();
        let buf = &mut lease.0;
        buf.extend_from_slice(head);
        let mut length = [0u8; 20];
        buf.extend_from_slice(format_len(&mut length, body.len()));
        buf.extend_from_slice(b"\r\n\r\n");
        buf.extend_from_slice(body);
        self.stream.write_all(buf).await?;
        buf.clear();
        let mut reader = crate::transport::arrival::Stamped::new(&self.stream);
        let mut answer = read_answer(&mut reader, buf).await?;
        answer.arrived = reader.arrived(std::time::Instant::now());
        Ok(answer)
    }
}

/// The head of every request to a target, up to the `Content-Length`
/// value: request line (`POST`), `headers` in order, then `content-length: `.
pub fn encode_head<'a>(path: &str, headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    encode_head_with(&http::Method::POST, path, headers)
}

/// [`encode_head`] with another method.
pub fn encode_head_with<'a>(
    method: &http::Method,
    path: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"content-length: ");
    head
}

/// `n` in decimal, written at the end of `buf`.
fn format_len(buf: &mut [u8; 20], mut n: usize) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// How the answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLength {
    Fixed(u64),
    Chunked,
    /// Until the server closes the connection.
    ToEof,
}

/// What an answer's head says, after its informational answers.
struct Head {
    status: u16,
    retry_after: Option<u64>,
    length: BodyLength,
    keep_alive: bool,
    /// Where the body starts in the buffer.
    len: usize,
}

/// Reads one answer from `io` to its end; `buf` is scratch space (empty on
/// entry; what follows the answer, if anything, is left in it).
pub async fn read_answer<R: AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>) -> Result<Answer, Error> {
    let head = loop {
        match parse_head(buf)? {
            Some(head) if (100..200).contains(&head.status) => {
                // 100 Continue and other informational answers come before
                // the real one.
                buf.drain(..head.len);
            }
            Some(head) => break head,
            None if buf.len() >= MAX_HEAD => {
                return Err(Error::Protocol(format!("the answer's head is longer than {MAX_HEAD} bytes")));
            }
            None => {
                if fill(io, buf).await? == 0 {
                    return Err(if buf.is_empty() {
                        Error::ClosedBeforeAnswer
                    } else {
                        Error::Protocol("the connection closed in the middle of the answer's head".into())
                    });
                }
            }
        }
    };
    buf.drain(..head.len);
    let mut excerpt = (head.status >= 400).then(Vec::new);
    let reusable = match head.length {
        BodyLength::Fixed(n) => skip_exact(io, buf, n, &mut excerpt).await?,
        // Boxed: rare in answers to heartbeats, and it would double this future.
        BodyLength::Chunked => Box::pin(skip_chunked(io, buf, &mut excerpt)).await?,
        BodyLength::ToEof => {
            loop {
                keep(&mut excerpt, buf);
                buf.clear();
                if fill(io, buf).await? == 0 {
                    break;
                }
            }
            false
        }
    };
    Ok(Answer {
        status: head.status,
        retry_after: head.retry_after,
        reusable: reusable && head.keep_alive,
        arrived: None,
        excerpt: excerpt.map(Vec::into_boxed_slice),
    })
}

/// Reads more into `buf`; the count read, 0 at the end of the stream.
async fn fill<R: AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
    io.read_buf(buf).await
}

/// The answer's head, if `buf` holds all of it.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Error> {
    // Left uninitialized: filling 100 empty headers (3.2 KB) on every
    // answer showed in the profile.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut response, buf, &mut headers);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::Protocol(format!("the answer is not HTTP/1.x: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    let http11 = response.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut keep_alive = http11;
    let mut retry_after = None;
    for h in response.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| Error::Protocol(format!("bad Content-Length {:?}", String::from_utf8_lossy(h.value))))?;
            if length.is_some_and(|m| m != n) {
                return Err(Error::Protocol("the answer has conflicting Content-Length headers".into()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked must be the last coding; anything else runs to the end.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            other_coding = !chunked;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && !http11 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = retry_after_secs(h.value);
        }
    }
    if status == 101 {
        return Err(Error::Protocol("the server switched protocols unasked (101)".into()));
    }
    let length = if (100..200).contains(&status) || status == 204 || status == 304 {
        BodyLength::Fixed(0)
    } else if chunked {
        BodyLength::Chunked
    } else if other_coding {
        // A transfer coding other than chunked last: the body runs to the
        // end of the connection, whatever Content-Length says.
        keep_alive = false;
        BodyLength::ToEof
    } else if let Some(n) = length {
        BodyLength::Fixed(n)
    } else {
        keep_alive = false;
        BodyLength::ToEof
    };
    Ok(Some(Head { status, retry_after, length, keep_alive, len }))
}

/// A `Retry-After` value in whole seconds (an HTTP date is not followed).
pub fn retry_after_secs(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// Skips `n` body bytes (keeping what fits of them in `excerpt`, if kept);
/// whether the answer ended cleanly (nothing unasked after it).
async fn skip_exact<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    mut n: u64,
    excerpt: &mut Option<Vec<u8>>,
) -> Result<bool, Error> {
    loop {
        let have = buf.len() as u64;
        if have >= n {
            keep(excerpt, &buf[..n as usize]);
            buf.drain(..n as usize);
            return Ok(buf.is_empty());
        }
        n -= have;
        keep(excerpt, buf);
        buf.clear();
        if fill(io, buf).await? == 0 {
            return Err(cut_short());
        }
    }
}

/// Skips a chunked body and its trailers; whether the answer ended cleanly.
async fn skip_chunked<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut Vec<u8>,
    excerpt: &mut Option<Vec<u8>>,
) -> Result<bool, Error> {
    loop {
        // The chunk-size line.
        let (line, size) = loop {
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete(found)) => break found,
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
                    if fill(io, buf).await? == 0 {
                        return Err(cut_short());
                    }
                }
                _ => return Err(Error::Protocol("bad chunk size in the answer".into())),
            }
        };
        buf.drain(..line);
        if size == 0 {
            break;
        }
        // The chunk's data and its CRLF.
        skip_exact(io, buf, size, excerpt).await?;
        skip_exact_crlf(io, buf).await?;
    }
    // Trailers, if any, end with an empty line.
    loop {
        if buf.starts_with(b"\r\n") {
            buf.drain(..2);
            return Ok(buf.is_empty());
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            return Ok(buf.is_empty());
        }
        if buf.len() >= MAX_HEAD {
            return Err(Error::Protocol("the answer's trailers are too long".into()));
        }
        if fill(io, buf).await? == 0 {
            return Err(cut_short());
        }
    }
}

async fn skip_exact_crlf<R: AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>) -> Result<(), Error> {
    while buf.len() < 2 {
        if fill(io, buf).await? == 0 {
            return Err(cut_short());
        }
    }
    if &buf[..2] != b"\r\n" {
        return Err(Error::Protocol("a chunk of the answer does not end with CRLF".into()));
    }
    buf.drain(..2);
    Ok(())
}

fn cut_short() -> Error {
    Error::Protocol("the connection closed before the answer's body was complete".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Hands out its bytes in the given piece sizes, then ends.
    struct Pieces {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            out: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let step = if self.sizes.is_empty() { usize::MAX } else { self.sizes.remove(0).max(1) };
            let n = step.min(self.data.len() - self.at).min(out.remaining());
            let at = self.at;
            out.put_slice(&self.data[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    fn read_in(bytes: &[u8], sizes: Vec<usize>) -> (Result<Answer, Error>, Vec<u8>) {
        let mut io = Pieces { data: bytes.to_vec(), at: 0, sizes };
        let mut buf = Vec::new();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let answer = runtime.block_on(read_answer(&mut io, &mut buf));
        (answer, buf)
    }

    fn read(bytes: &[u8]) -> Result<Answer, Error> {
        read_in(bytes, vec![]).0
    }

    #[test]
    fn content_length_answers_keep_the_connection() {
        let a = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello").unwrap();
        assert_eq!(a, Answer { status: 200, retry_after: None, reusable: true, arrived: None, excerpt: None });
        let a = read(b"HTTP/1.1 429 Too Many\r\ncontent-length: 0\r\nRetry-After: 7\r\n\r\n").unwrap();
        let excerpt = Some(Box::from(&b""[..]));
        assert_eq!(a, Answer { status: 429, retry_after: Some(7), reusable: true, arrived: None, excerpt });
    }

    #[test]
    fn close_http10_and_unbounded_bodies_end_the_connection() {
        let a = read(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno").unwrap();
        assert_eq!((a.status, a.reusable), (503, false));
        let a = read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(!a.reusable);
        let a = read(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(a.reusable);
        let a = read(b"HTTP/1.1 200 OK\r\n\r\nbody until the end").unwrap();
        assert_eq!((a.status, a.reusable), (200, false));
        // Not chunked last: to the end, past what Content-Length says.
        let (a, rest) =
            read_in(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nabcdef", vec![]);
        assert_eq!((a.unwrap().reusable, rest.len()), (false, 0));
    }

    #[test]
    fn chunked_bodies_with_trailers_are_read_to_their_end() {
        let a = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!((a.status, a.reusable), (200, true));
        let a =
            read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: 1\r\n\r\n").unwrap();
        assert!(a.reusable);
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn informational_answers_and_empty_statuses() {
        let a = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((a.status, a.reusable), (204, true));
        assert!(matches!(read(b"HTTP/1.1 101 Switching\r\n\r\n"), Err(Error::Protocol(_))));
    }

    #[test]
    fn broken_answers_are_protocol_errors_and_silence_is_not() {
        assert!(matches!(read(b""), Err(Error::ClosedBeforeAnswer)));
        for bad in [
            &b"SSH-2.0-OpenSSH_9.6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Le",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        ] {
            assert!(matches!(read(bad), Err(Error::Protocol(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        while huge.len() <= MAX_HEAD {
            huge.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(matches!(read(&huge), Err(Error::Protocol(_))));
    }

    #[test]
    fn unasked_bytes_after_an_answer_end_the_connection() {
        let (a, rest) = read_in(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n", vec![]);
        assert!(!a.unwrap().reusable);
        assert!(!rest.is_empty());
    }

    #[test]
    fn the_head_ends_where_content_length_begins() {
        let head =
            encode_head("/SendHeartbeat", [("host", &b"127.0.0.1:80"[..]), ("content-type", b"application/json")]);
        let mut len = [0u8; 20];
        let mut request = head.clone();
        request.extend_from_slice(format_len(&mut len, 529));
        request.extend_from_slice(b"\r\n\r\n");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Request::new(&mut headers);
        assert!(parsed.parse(&request).unwrap().is_complete());
        assert_eq!((parsed.method, parsed.path, parsed.version), (Some("POST"), Some("/SendHeartbeat"), Some(1)));
        let lengths: Vec<_> = parsed.headers.iter().filter(|h| h.name == "content-length").map(|h| h.value).collect();
        assert_eq!(lengths, [b"529"]);
        for n in [0, 7, 10, 999, 1_000_000, usize::MAX] {
            assert_eq!(format_len(&mut len, n), n.to_string().as_bytes());
        }
    }

    proptest! {
        /// Whatever a server sends, reading it ends in an answer or an
        /// error, never a panic, and never keeps more than it was sent.
        #[test]
        fn any_bytes_read_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            sizes in proptest::collection::vec(1usize..64, 0..20),
        ) {
            let (answer, rest) = read_in(&bytes, sizes);
            prop_assert!(rest.len() <= bytes.len());
            if let Ok(a) = answer {
                prop_assert!((100..1000).contains(&a.status));
            }
        }

        /// Mangled versions of real answers read without panicking.
        #[test]
        fn mangled_answers_read_without_panicking(cut in 0usize..120, flip in 0usize..120, byte in any::<u8>()) {
            let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n4\r\nbusy\r\n0\r\n\r\n".to_vec();
            let flip = flip % bytes.len();
            bytes[flip] = byte;
            bytes.truncate(cut.min(bytes.len()));
            let _ = read_in(&bytes, vec![]);
        }

        /// However the bytes arrive, the answer reads the same.
        #[test]
        fn any_split_of_an_answer_reads_the_same(sizes in proptest::collection::vec(1usize..40, 0..80), chunked in any::<bool>()) {
            let bytes: &[u8] = if chunked {
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Unavailable\r\nRetry-After: 2\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
            } else {
                b"HTTP/1.1 503 Unavailable\r\nRetry-After: 2\r\nContent-Length: 14\r\n\r\nbusy0123456789"
            };
            let (answer, rest) = read_in(bytes, sizes);
            // The error answer's body is kept, the same however it came.
            let excerpt = Some(Box::from(&b"busy0123456789"[..]));
            prop_assert_eq!(answer.unwrap(), Answer { status: 503, retry_after: Some(2), reusable: true, arrived: None, excerpt });
            prop_assert!(rest.is_empty());
        }
    }
}
