//! A small HTTP/1.1 server for fleetstorm's own pages while a run goes
//! (`--metrics-addr`'s `/metrics`, `--dashboard`): each request answered
//! at once from the caller's state.
//!
//! Its end is graceful: [`Pages::close`] stops accepting, lets every
//! answer already begun finish writing (a long report to a slow browser
//! arrives whole), closes idle connections, and gives up after
//! [`CLOSE_GRACE`]. An answer can carry an [`OnWritten`] extension, called
//! once its last byte has been handed to the connection: the dashboard
//! knows from it that its final report was delivered.
//!
//! Bound to loopback, it answers only requests addressed to loopback (the
//! `Host` header an IP literal of loopback or `localhost`; 403 otherwise):
//! a web page elsewhere cannot point a domain of its own at 127.0.0.1 and
//! read the run through the user's browser (DNS rebinding).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A page's answer to one request.
pub type Page = Response<Bytes>;

/// The piece of a page handed to its connection at a time: the last one
/// is taken only once the rest has gone to the socket, give or take
/// hyper's write buffer.
const PIECE: usize = 64 << 10;

/// How long [`Pages::close`] waits for the answers already begun.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Put in a [`Page`]'s extensions: called once, when the page's last byte
/// has been handed to its connection (which [`Pages::close`] then lets
/// finish writing).
#[derive(Clone)]
pub struct OnWritten(pub Arc<dyn Fn() + Send + Sync>);

/// A pages server running on its address until [`Pages::close`].
pub struct Pages {
    addr: SocketAddr,
    stop: CancellationToken,
    served: JoinHandle<()>,
}

impl Pages {
    /// The address it is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets the answers begun finish (at most
    /// [`CLOSE_GRACE`]), then returns.
    pub async fn close(self) {
        self.stop.cancel();
        let _ = self.served.await;
    }
}

/// Serves `answer` on `addr` until [`Pages::close`] (or the runtime's end).
pub async fn serve_pages<F>(addr: SocketAddr, answer: F) -> std::io::Result<Pages>
where
    F: Fn(&Request<hyper::body::Incoming>) -> Page + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let loopback = addr.ip().is_loopback();
    let answer = Arc::new(move |req: &Request<hyper::body::Incoming>| {
        let host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok());
        if loopback && !addressed_to_loopback(host) {
            let refusal = b"fleetstorm's pages on loopback answer requests to loopback only\n";
            return page(hyper::StatusCode::FORBIDDEN, "text/plain", refusal.to_vec());
        }
        answer(req)
    });
    let stop = CancellationToken::new();
    let token = stop.clone();
    let served = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let answer = answer.clone();
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = tracked(answer(&req));
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(CLOSE_GRACE, graceful.shutdown()).await;
    });
    Ok(Pages { addr: bound, stop: token, served })
}

/// `page` with a body that calls its [`OnWritten`], if any, at its end.
fn tracked(page: Page) -> Response<Tracked> {
    let (mut parts, body) = page.into_parts();
    let on_written = parts.extensions.remove::<OnWritten>();
    let mut body = Tracked { body, on_written };
    if body.body.is_empty() {
        // Nothing to take: hyper never asks an empty body for a frame.
        body.written();
    }
    Response::from_parts(parts, body)
}

/// A page's body, handed over a [`PIECE`] at a time, that says when its
/// last byte has been taken.
struct Tracked {
    body: Bytes,
    on_written: Option<OnWritten>,
}

impl Tracked {
    fn written(&mut self) {
        if let Some(OnWritten(call)) = self.on_written.take() {
            call();
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.body.is_empty() {
            self.written();
            return Poll::Ready(None);
        }
        let take = self.body.len().min(PIECE);
        let piece = self.body.split_to(take);
        if self.body.is_empty() {
            self.written();
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.body.len() as u64)
    }
}

/// A page of `status` with `content_type`, never cached.
pub fn page(status: hyper::StatusCode, content_type: &str, body: Vec<u8>) -> Page {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Bytes::from(body))
        .unwrap_or_else(|_| Response::new(Bytes::new()))
}

/// `host` (a `Host` header) names loopback: `localhost` or a loopback IP
/// literal, with or without a port. serve's rule too (`server::http`).
pub(crate) fn addressed_to_loopback(host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_addressed_to_loopback_are_answered_on_loopback() {
        for host in
            ["127.0.0.1:8089", "127.0.0.1", "127.1.2.3:80", "localhost:8089", "LOCALHOST", "[::1]:8089", "[::1]"]
        {
            assert!(addressed_to_loopback(Some(host)), "{host}");
        }
        for host in ["evil.example:8089", "evil.example", "10.0.0.1:8089", "[2001:db8::1]:80", "127.0.0.1.evil.example"]
        {
            assert!(!addressed_to_loopback(Some(host)), "{host}");
        }
        assert!(!addressed_to_loopback(None));
    }

    /// The status `GET /` gets from a server on `addr` with this `Host`.
    async fn status_for(addr: SocketAddr, host: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer.lines().next().unwrap_or_default().to_string()
    }

    #[tokio::test]
    async fn every_page_on_loopback_refuses_requests_addressed_elsewhere() {
        let ok = |_: &Request<hyper::body::Incoming>| page(hyper::StatusCode::OK, "text/plain", b"ok".to_vec());
        let pages = serve_pages("127.0.0.1:0".parse().unwrap(), ok).await.unwrap();
        let addr = pages.addr();
        assert_eq!(status_for(addr, &addr.to_string()).await, "HTTP/1.1 200 OK");
        assert_eq!(status_for(addr, "localhost").await, "HTTP/1.1 200 OK");
        assert_eq!(status_for(addr, "rebound.example").await, "HTTP/1.1 403 Forbidden");
        pages.close().await;
    }

    /// A page far larger than the sockets' buffers, begun before the server
    /// is closed and read slowly after, arrives whole; its `OnWritten` is
    /// called once, after its last byte was taken.
    #[tokio::test]
    async fn a_page_begun_before_the_close_arrives_whole() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        const SIZE: usize = 48 << 20;
        let written = Arc::new(AtomicUsize::new(0));
        let seen = written.clone();
        let big = move |_: &Request<hyper::body::Incoming>| {
            let mut answer = page(hyper::StatusCode::OK, "text/plain", vec![b'x'; SIZE]);
            let seen = seen.clone();
            answer.extensions_mut().insert(OnWritten(Arc::new(move || {
                seen.fetch_add(1, Ordering::SeqCst);
            })));
            answer
        };
        let pages = serve_pages("127.0.0.1:0".parse().unwrap(), big).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(pages.addr()).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        // The answer has begun: its first bytes are here.
        let mut first = [0u8; 16];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first[..15], b"HTTP/1.1 200 OK");
        // The server is asked to close while most of the page is unwritten
        // (no socket holds 48 MiB); the rest is read in small pieces.
        let closed = tokio::spawn(pages.close());
        assert_eq!(written.load(Ordering::SeqCst), 0, "the last byte cannot have been taken yet");
        let mut rest = Vec::new();
        let mut piece = vec![0u8; 4096];
        loop {
            let n = stream.read(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&piece[..n]);
            tokio::task::yield_now().await;
        }
        let text = String::from_utf8_lossy(&rest);
        let head_end = text.find("\r\n\r\n").expect("the answer's head") + 4;
        assert_eq!(rest.len() - head_end, SIZE, "the whole page");
        assert!(rest[head_end..].iter().all(|&b| b == b'x'));
        closed.await.unwrap();
        assert_eq!(written.load(Ordering::SeqCst), 1);
    }
}
