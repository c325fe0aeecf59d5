//! The client side: how a heartbeat body becomes an HTTP exchange.
//!
//! [`Transport`] is what the engine's workers need: given a connection (or
//! none) and a body, do one heartbeat and hand back its [`Outcome`] and the
//! connection if it can carry another. Workers own connections and decide
//! who uses which (per device, a shared pool, or none), so a transport
//! holds no shared connection state. [`Http`] is the real one, on hyper's
//! HTTP/1.1 client connections; tests use others to drive the engine under
//! a paused clock.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::stats::{Failure, Outcome};

/// One heartbeat exchange at a time per connection.
pub trait Transport: Send + Sync + 'static {
    /// A connection that can carry heartbeats, one at a time.
    type Conn: Send + 'static;

    /// Sends one heartbeat over `conn` (connecting first if it is `None` or
    /// closed) and returns the outcome, with the connection when it can be
    /// used again. Finishes within the transport's timeout.
    fn exchange(
        &self,
        conn: Option<Self::Conn>,
        body: Bytes,
    ) -> impl Future<Output = Exchange<Self::Conn>> + Send + 'static;
}

/// The result of one exchange.
pub struct Exchange<C> {
    pub outcome: Outcome,
    /// The connection, if it may carry the next heartbeat.
    pub conn: Option<C>,
    /// The answer's `Retry-After`, in seconds, if it had one.
    pub retry_after: Option<Duration>,
}

impl<C> Exchange<C> {
    /// An exchange that ended without a usable answer.
    pub fn failed(failure: Failure) -> Self {
        Exchange { outcome: Outcome::Failed(failure), conn: None, retry_after: None }
    }
}

/// Where and how to send: resolved once at the start of a run.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub path: Uri,
    /// Headers of every request: Host, Content-Type and the scenario's.
    pub headers: HeaderMap,
    pub timeout: Duration,
    /// Keep connections open between heartbeats (false: a new connection
    /// for each).
    pub keep_alive: bool,
}

impl Endpoint {
    pub fn new(
        addr: SocketAddr,
        host: &str,
        path: &str,
        extra: impl IntoIterator<Item = (http::HeaderName, HeaderValue)>,
        timeout: Duration,
        keep_alive: bool,
    ) -> Result<Endpoint, String> {
        let path: Uri = path.parse().map_err(|e| format!("bad path {path:?}: {e}"))?;
        let mut headers = HeaderMap::new();
        let host =
            if host.contains(':') { format!("[{host}]:{}", addr.port()) } else { format!("{host}:{}", addr.port()) };
        headers.insert(HOST, HeaderValue::try_from(host).map_err(|e| e.to_string())?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in extra {
            headers.insert(name, value);
        }
        if !keep_alive {
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        Ok(Endpoint { addr, path, headers, timeout, keep_alive })
    }
}

/// HTTP/1.1 over TCP with hyper's client connections.
#[derive(Debug, Clone)]
pub struct Http {
    endpoint: Arc<Endpoint>,
}

impl Http {
    pub fn new(endpoint: Endpoint) -> Self {
        Http { endpoint: Arc::new(endpoint) }
    }
}

pub type Sender = http1::SendRequest<Full<Bytes>>;

impl Transport for Http {
    type Conn = Sender;

    fn exchange(&self, conn: Option<Sender>, body: Bytes) -> impl Future<Output = Exchange<Sender>> + Send + 'static {
        let endpoint = self.endpoint.clone();
        async move {
            match tokio::time::timeout(endpoint.timeout, exchange(&endpoint, conn, body)).await {
                Ok(Ok(answer)) => Exchange {
                    outcome: Outcome::Status(answer.status),
                    conn: answer.conn,
                    retry_after: answer.retry_after,
                },
                Ok(Err(failure)) => Exchange::failed(failure),
                Err(_elapsed) => Exchange::failed(Failure::Timeout),
            }
        }
    }
}

/// An HTTP answer, read to its end.
struct Answer {
    status: u16,
    conn: Option<Sender>,
    retry_after: Option<Duration>,
}

async fn exchange(endpoint: &Endpoint, conn: Option<Sender>, body: Bytes) -> Result<Answer, Failure> {
    // A kept connection the server has closed meanwhile is replaced before
    // the heartbeat is written to it.
    let mut sender = match conn {
        Some(s) if !s.is_closed() => s,
        _ => connect(endpoint.addr).await?,
    };
    sender.ready().await.map_err(|e| classify(&e))?;
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = endpoint.path.clone();
    *req.headers_mut() = endpoint.headers.clone();
    let response = sender.send_request(req).await.map_err(|e| classify(&e))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Read the answer to its end so the connection can carry the next one.
    response.into_body().collect().await.map_err(|e| classify(&e))?;
    let reusable = endpoint.keep_alive && !sender.is_closed();
    Ok(Answer { status, conn: reusable.then_some(sender), retry_after })
}

/// Opens a connection and starts its driver task (it ends when the
/// connection closes or its sender is dropped).
pub async fn connect(addr: SocketAddr) -> Result<Sender, Failure> {
    let stream = TcpStream::connect(addr).await.map_err(|_| Failure::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| classify(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sorts a hyper error into a failure class: a malformed answer is a
/// protocol error; anything else (reset, closed early) an I/O error.
pub fn classify(e: &hyper::Error) -> Failure {
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() { Failure::Protocol } else { Failure::Io }
}
