//! HTTP behind the [`Transport`] seam: [`Http`], one heartbeat as one
//! request over plain TCP or TLS. Plain HTTP/1.1 connections run the lean
//! client ([`h1`], the hot path: the request's head encoded once per
//! run); TLS ([`super::tls`], rustls) and HTTP/2 go through hyper's client
//! connections. Each request is signed with SigV4 when asked ([`sigv4`]),
//! from the scenario's source addresses in turn; an error answer's first
//! line per status is kept for the report, with credentials masked. The
//! HTTP-only settings (version, SigV4) are in [`settings`]; what every
//! protocol shares (connection modes, TLS, source addresses) stays in
//! [`super::settings`].

pub mod h1;
pub mod settings;
pub mod sigv4;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};

use super::ports;
use super::route::Route;
use super::tls::{self, TlsClient};
use super::{Connected, Exchange, Identity, Outgoing, Transport};
use crate::stats::{Failure, Outcome, PerClass};
pub use sigv4::Signer;

/// Where and how to send: resolved once at the start of a run.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The request target: origin form for HTTP/1.1, absolute for HTTP/2
    /// and for signing.
    pub path: Uri,
    pub absolute: Uri,
    /// Headers of every request: Host (HTTP/1.1), Content-Type and the scenario's.
    pub headers: HeaderMap,
    /// The same request's HTTP/1.1 head, encoded once, up to the
    /// `Content-Length` value (see [`h1::encode_head`]).
    h1_head: Vec<u8>,
    pub timeout: Duration,
    /// Keep connections open between heartbeats (false: a new connection
    /// for each).
    pub keep_alive: bool,
    pub http2: bool,
    pub tls: Option<TlsClient>,
    pub signer: Option<Signer>,
    /// The local addresses and ports new connections leave from.
    pub ports: ports::LocalPorts,
    /// The first error message of each failure class, for the summary:
    /// one clear line, not a flood.
    first_errors: PerClass<OnceLock<String>>,
    /// The first answer of each status from 400 to 599, as a line: what
    /// its body said (an excerpt, credentials masked) and what to check.
    first_answers: Box<[OnceLock<String>]>,
}

/// How to reach the target, beyond its address.
#[derive(Debug, Default)]
pub struct EndpointOptions {
    pub keep_alive: bool,
    pub http2: bool,
    pub tls: Option<TlsClient>,
    pub signer: Option<Signer>,
    pub sources: Vec<IpAddr>,
}

/// Why an [`Endpoint`] cannot be built from a scenario's target.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("bad path {path:?}: {source}")]
    Path { path: String, source: http::uri::InvalidUri },
    #[error("bad target {target}: {source}")]
    Target { target: String, source: http::uri::InvalidUri },
    #[error("{0}")]
    Host(#[source] http::header::InvalidHeaderValue),
}

impl Endpoint {
    pub fn new(
        addr: SocketAddr,
        host: &str,
        path: &str,
        extra: impl IntoIterator<Item = (http::HeaderName, HeaderValue)>,
        timeout: Duration,
        options: EndpointOptions,
    ) -> Result<Endpoint, EndpointError> {
        let origin: Uri = path.parse().map_err(|source| EndpointError::Path { path: path.to_string(), source })?;
        let mut headers = HeaderMap::new();
        let authority =
            if host.contains(':') { format!("[{host}]:{}", addr.port()) } else { format!("{host}:{}", addr.port()) };
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        let absolute: Uri = format!("{scheme}://{authority}{path}")
            .parse()
            .map_err(|source| EndpointError::Target { target: format!("{authority}{path}"), source })?;
        // HTTP/2 carries the authority in the request line (:authority);
        // SigV4 signs a Host header, which HTTP/2 sends as :authority too.
        if !options.http2 || options.signer.is_some() {
            headers.insert(HOST, HeaderValue::try_from(authority).map_err(EndpointError::Host)?);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in extra {
            headers.insert(name, value);
        }
        if !options.keep_alive && !options.http2 {
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let h1_head = h1::encode_head(path, headers.iter().map(|(name, value)| (name.as_str(), value.as_bytes())));
        Ok(Endpoint {
            addr,
            h1_head,
            path: origin,
            absolute,
            headers,
            timeout,
            keep_alive: options.keep_alive,
            http2: options.http2,
            tls: options.tls,
            signer: options.signer,
            ports: ports::LocalPorts::new(&options.sources, addr, ports::PortRange::of_this_machine()),
            first_errors: PerClass::default(),
            first_answers: (400..600).map(|_| OnceLock::new()).collect(),
        })
    }

    /// Notes `message` as the first error of `failure`'s class, if it is.
    /// No lock: once a class has its message, the rest of its failures
    /// cost one atomic load each.
    fn note(&self, failure: Failure, message: impl FnOnce() -> String) -> Failure {
        let first = &self.first_errors[Outcome::Failed(failure).class()];
        if first.get().is_none() {
            let _ = first.set(message());
        }
        failure
    }

    /// Notes the first answer of an error status (400 to 599): `excerpt`,
    /// the start of its body, cleaned and with `outgoing`'s credentials
    /// masked. No lock: once a status has its line, the rest of its
    /// answers cost one atomic load each.
    fn note_answer(&self, status: u16, excerpt: &[u8], outgoing: &Outgoing) {
        let Some(first) = status.checked_sub(400).and_then(|i| self.first_answers.get(usize::from(i))) else {
            return;
        };
        if first.get().is_none() {
            let _ = first.set(answer_hint(status, excerpt, &self.credentials(outgoing)));
        }
    }

    /// What in a request may be a credential: the values of its headers
    /// (and each word of them: a token after its scheme) but the ones
    /// every request has, and the segments of a request's own target that
    /// carry a digit (a device's access token in a path).
    fn credentials(&self, outgoing: &Outgoing) -> Vec<String> {
        let plain = [HOST, CONTENT_TYPE, http::header::CONNECTION];
        let mut values: Vec<&[u8]> =
            self.headers.iter().filter(|(name, _)| !plain.contains(name)).map(|(_, v)| v.as_bytes()).collect();
        let mut segments = Vec::new();
        if let Route::Http(a) = &outgoing.route {
            values.extend(a.headers.iter().map(|(_, v)| v.as_bytes()));
            segments.extend(
                a.target
                    .as_str()
                    .split(['/', '?', '&', '='])
                    .filter(|s| s.len() >= 4 && s.bytes().any(|b| b.is_ascii_digit())),
            );
        }
        let mut out: Vec<String> = Vec::new();
        for v in values {
            let v = String::from_utf8_lossy(v);
            out.extend(v.split([' ', ',', ';', '&']).filter(|w| w.len() >= 4).map(str::to_string));
            out.push(v.into_owned());
        }
        out.extend(segments.into_iter().map(str::to_string));
        // The longest first, so that a value is masked whole before a part of it is.
        out.sort_by_key(|v| std::cmp::Reverse(v.len()));
        out.dedup();
        out
    }

    /// The first error message of each failure class seen so far, and the
    /// first answer of each error status (as `http_401` and so on).
    pub fn first_errors(&self) -> BTreeMap<String, String> {
        let classes =
            self.first_errors.iter().filter_map(|(class, first)| first.get().map(|m| (class.to_string(), m.clone())));
        let answers = (400u16..)
            .zip(self.first_answers.iter())
            .filter_map(|(status, first)| first.get().map(|m| (format!("http_{status}"), m.clone())));
        classes.chain(answers).collect()
    }
}

/// The most characters of an error answer's body its line quotes.
const EXCERPT_CHARS: usize = 200;

/// The line for the first answer of an error status: what its body said
/// (at most [`EXCERPT_CHARS`], control characters made spaces, each of
/// `credentials` masked) and what to check.
fn answer_hint(status: u16, body: &[u8], credentials: &[String]) -> String {
    let mut text: String = String::from_utf8_lossy(body)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for secret in credentials {
        if !secret.is_empty() {
            text = text.replace(secret.as_str(), "***");
        }
    }
    let mut said: String = text.chars().take(EXCERPT_CHARS).collect();
    if said.len() < text.len() {
        said.push('…');
    }
    let check = match status {
        401 | 403 => "check the credentials the devices send: the scenario's headers, the identities file",
        404 => "check the target's path, or the fleet's profile",
        429 | 503 => "the backend is shedding load: check the rate, and the retries (they add to it)",
        400..=499 => "check what the devices send: the headers, the body template, the fleet's profile",
        _ => "check the backend's logs",
    };
    if said.is_empty() {
        format!("answered {status} with an empty body; {check}")
    } else {
        format!("answered {status}: \"{said}\"; {check}")
    }
}

/// HTTP/1.1 or HTTP/2, over TCP or TLS, with hyper's client connections.
#[derive(Debug, Clone)]
pub struct Http {
    endpoint: Arc<Endpoint>,
}

impl Http {
    pub fn new(endpoint: Endpoint) -> Self {
        Http { endpoint: Arc::new(endpoint) }
    }

    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

/// A client connection of either HTTP version.
pub enum HttpConn {
    /// HTTP/1.1 over plain TCP, driven by the exchange itself.
    Lean(h1::Conn),
    /// HTTP/1.1 over TLS, or HTTP/2, driven by hyper's connection task.
    Hyper(HyperConn),
}

/// A connection hyper drives.
pub enum HyperConn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl HttpConn {
    fn is_closed(&self) -> bool {
        match self {
            HttpConn::Lean(c) => c.is_closed(),
            HttpConn::Hyper(s) => s.is_closed(),
        }
    }
}

impl HyperConn {
    fn is_closed(&self) -> bool {
        match self {
            HyperConn::H1(s) => s.is_closed(),
            HyperConn::H2(s) => s.is_closed(),
        }
    }
}

impl Transport for Http {
    type Conn = HttpConn;

    fn first_errors(&self) -> BTreeMap<String, String> {
        self.endpoint.first_errors()
    }

    fn exchange(
        &self,
        conn: Option<HttpConn>,
        outgoing: Outgoing,
    ) -> impl Future<Output = Exchange<HttpConn>> + Send + 'static {
        let endpoint = self.endpoint.clone();
        async move {
            let mut connected = None;
            let attempt = exchange(&endpoint, conn, outgoing, &mut connected);
            match tokio::time::timeout(endpoint.timeout, attempt).await {
                Ok(Ok(answer)) => Exchange {
                    outcome: Outcome::Status(answer.status),
                    conn: answer.conn,
                    retry_after: answer.retry_after,
                    connected,
                    answered_at: answer.arrived,
                },
                Ok(Err(failure)) => Exchange { connected, ..Exchange::failed(failure) },
                Err(_elapsed) => Exchange {
                    connected,
                    ..Exchange::failed(
                        endpoint.note(Failure::Timeout, || format!("no complete answer within {:?}", endpoint.timeout)),
                    )
                },
            }
        }
    }

    fn multiplexed(&self) -> bool {
        self.endpoint.http2
    }

    fn share(&self, conn: &HttpConn) -> Option<HttpConn> {
        match conn {
            HttpConn::Hyper(HyperConn::H2(s)) => Some(HttpConn::Hyper(HyperConn::H2(s.clone()))),
            HttpConn::Hyper(HyperConn::H1(_)) | HttpConn::Lean(_) => None,
        }
    }

    fn is_closed(&self, conn: &HttpConn) -> bool {
        conn.is_closed()
    }

    /// A connection is anyone's: the identity is not looked at.
    fn connect(
        &self,
        _identity: Identity,
    ) -> impl Future<Output = Result<(HttpConn, Connected), Outcome>> + Send + 'static {
        let endpoint = self.endpoint.clone();
        async move {
            match tokio::time::timeout(endpoint.timeout, connect(&endpoint)).await {
                Ok(Ok((sender, handshake))) => Ok((sender, Connected { tls_handshake: handshake, session: None })),
                Ok(Err(failure)) => Err(Outcome::Failed(failure)),
                Err(_elapsed) => Err(Outcome::Failed(Failure::Timeout)),
            }
        }
    }
}

/// An HTTP answer, read to its end.
struct Answer {
    status: u16,
    conn: Option<HttpConn>,
    retry_after: Option<Duration>,
    /// When it reached this machine, if known (the lean client's sockets).
    arrived: Option<Instant>,
    /// An error answer's first bytes of body (see [`h1::Answer::excerpt`]).
    excerpt: Option<Box<[u8]>>,
}

async fn exchange(
    endpoint: &Endpoint,
    conn: Option<HttpConn>,
    outgoing: Outgoing,
    connected: &mut Option<Connected>,
) -> Result<Answer, Failure> {
    // A kept connection the server has closed meanwhile is replaced before
    // the heartbeat is written to it.
    let sender = match conn {
        Some(s) if !s.is_closed() => s,
        _ => {
            // Boxed: the connect path (TCP, TLS, the HTTP handshake) made
            // up 8.5 of this future's 9.5 KB, and every exchange was built
            // and moved with it, while few of them connect.
            let (sender, handshake) = Box::pin(connect(endpoint)).await?;
            *connected = Some(Connected { tls_handshake: handshake, session: None });
            sender
        }
    };
    let mut answer = match sender {
        HttpConn::Lean(mut conn) => {
            let answer = lean_exchange(endpoint, &mut conn, &outgoing).await?;
            Answer {
                status: answer.status,
                retry_after: answer.retry_after.map(Duration::from_secs),
                conn: (answer.reusable && endpoint.keep_alive).then_some(HttpConn::Lean(conn)),
                arrived: answer.arrived,
                excerpt: answer.excerpt,
            }
        }
        // Boxed: TLS and HTTP/2 exchanges are rarer and dearer; inline,
        // hyper's request future would more than double every exchange's.
        HttpConn::Hyper(hyper) => Box::pin(hyper_exchange(endpoint, hyper, &outgoing)).await?,
    };
    // Error answers only: a success carries no excerpt.
    if let Some(excerpt) = answer.excerpt.take() {
        endpoint.note_answer(answer.status, &excerpt, &outgoing);
    }
    Ok(answer)
}

/// One exchange on a connection hyper drives (TLS, HTTP/2).
async fn hyper_exchange(endpoint: &Endpoint, mut sender: HyperConn, outgoing: &Outgoing) -> Result<Answer, Failure> {
    let Outgoing { body, route } = outgoing;
    let mut req = request(endpoint, Full::new(body.clone()), body, route)?;
    let response = match &mut sender {
        HyperConn::H1(s) => {
            s.ready().await.map_err(|e| classify(endpoint, &e))?;
            *req.uri_mut() = match route {
                // (`request` refused an MQTT route.)
                Route::Endpoint | Route::Mqtt(_) => endpoint.path.clone(),
                Route::Http(a) => Uri::from(a.target.clone()),
            };
            s.send_request(req).await
        }
        HyperConn::H2(s) => {
            s.ready().await.map_err(|e| classify(endpoint, &e))?;
            *req.version_mut() = http::Version::HTTP_2;
            req.headers_mut().remove(HOST);
            s.send_request(req).await
        }
    }
    .map_err(|e| classify(endpoint, &e))?;
    let status = response.status().as_u16();
    let retry_after =
        response.headers().get(http::header::RETRY_AFTER).and_then(|v| h1::retry_after_secs(v.as_bytes()));
    // Read the answer to its end so the connection can carry the next one.
    let read = response.into_body().collect().await.map_err(|e| classify(endpoint, &e))?;
    let excerpt = (status >= 400).then(|| {
        let body = read.to_bytes();
        Box::from(&body[..body.len().min(h1::EXCERPT)])
    });
    let reusable = (endpoint.keep_alive || endpoint.http2) && !sender.is_closed();
    Ok(Answer {
        status,
        conn: reusable.then_some(HttpConn::Hyper(sender)),
        retry_after: retry_after.map(Duration::from_secs),
        arrived: None,
        excerpt,
    })
}

/// The heartbeat's request with `payload` as its body: POST to the target's
/// absolute URI (or the request's own target on the same origin) with every
/// request's headers and its own, signed over `body` when the scenario asks
/// for SigV4.
fn request<B>(endpoint: &Endpoint, payload: B, body: &[u8], route: &Route) -> Result<Request<B>, Failure> {
    let mut req = Request::new(payload);
    *req.method_mut() = Method::POST;
    *req.headers_mut() = endpoint.headers.clone();
    match route {
        Route::Endpoint => *req.uri_mut() = endpoint.absolute.clone(),
        Route::Http(a) => {
            *req.method_mut() = a.method.clone();
            let mut parts = endpoint.absolute.clone().into_parts();
            parts.path_and_query = Some(a.target.clone());
            *req.uri_mut() = Uri::from_parts(parts)
                .map_err(|e| endpoint.note(Failure::Protocol, || format!("bad request target {}: {e}", a.target)))?;
            for (name, value) in &a.headers {
                req.headers_mut().insert(name.clone(), value.clone());
            }
        }
        // The scenario gives an MQTT profile's fleets an MQTT target.
        Route::Mqtt(r) => {
            return Err(
                endpoint.note(Failure::Protocol, || format!("an MQTT message (topic {}) cannot go over HTTP", r.topic))
            );
        }
    }
    if let Some(signer) = &endpoint.signer {
        signer
            .sign(&mut req, body, SystemTime::now())
            .map_err(|e| endpoint.note(Failure::Protocol, || format!("cannot sign the request: {e}")))?;
    }
    Ok(req)
}

/// One exchange on a lean HTTP/1.1 connection: the head encoded once per
/// target, or per request when it is signed or has its own target.
async fn lean_exchange(endpoint: &Endpoint, conn: &mut h1::Conn, outgoing: &Outgoing) -> Result<h1::Answer, Failure> {
    let Outgoing { body, route } = outgoing;
    let answer = match (&endpoint.signer, route) {
        (None, Route::Endpoint) => conn.exchange(&endpoint.h1_head, body).await,
        (_, route) => {
            let req = request(endpoint, (), body, route)?;
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let head =
                h1::encode_head_with(req.method(), path, req.headers().iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
            conn.exchange(&head, body).await
        }
    };
    answer.map_err(|e| {
        let failure = match e {
            h1::Error::Protocol(_) => Failure::Protocol,
            h1::Error::Io(_) | h1::Error::ClosedBeforeAnswer => Failure::Io,
        };
        endpoint.note(failure, || e.to_string())
    })
}

/// Opens a connection (TCP, then TLS if the target is `https://`) from the
/// next source address, and starts its driver task (it ends when the
/// connection closes or its senders are dropped).
async fn connect(endpoint: &Endpoint) -> Result<(HttpConn, Option<Duration>), Failure> {
    let addr = endpoint.addr;
    let stream = endpoint.ports.connect(addr).await.map_err(|e| {
        endpoint.note(Failure::Connect, || match e {
            ports::ConnectError::Connect(e) => format!("cannot connect to {addr}: {e}"),
            other => other.to_string(),
        })
    })?;
    let _ = stream.set_nodelay(true);
    match &endpoint.tls {
        None if endpoint.http2 => Ok((handshake(endpoint, TokioIo::new(stream), true).await?, None)),
        None => Ok((HttpConn::Lean(h1::Conn::new(stream)), None)),
        Some(tls) => {
            let started = Instant::now();
            let stream = tls.connector.connect(tls.server_name.clone(), stream).await.map_err(|e| {
                endpoint.note(Failure::Tls, || match tls::rustls_error(&e) {
                    Some(tls) => format!("TLS handshake with {addr} failed: {}", tls::explain(tls)),
                    None => format!("TLS handshake with {addr} failed: {e}"),
                })
            })?;
            let took = started.elapsed();
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            if endpoint.http2 && !h2 {
                endpoint.note(Failure::Protocol, || "the server did not agree to HTTP/2 (ALPN); using HTTP/1.1".into());
            }
            Ok((handshake(endpoint, TokioIo::new(stream), h2).await?, Some(took)))
        }
    }
}

async fn handshake<I>(endpoint: &Endpoint, io: TokioIo<I>, h2: bool) -> Result<HttpConn, Failure>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
        let (sender, connection) =
            http2::handshake(TokioExecutor::new(), io).await.map_err(|e| classify(endpoint, &e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(HttpConn::Hyper(HyperConn::H2(sender)))
    } else {
        let (sender, connection) = http1::handshake(io).await.map_err(|e| classify(endpoint, &e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(HttpConn::Hyper(HyperConn::H1(sender)))
    }
}

/// Sorts a hyper error into a failure class: a malformed or truncated
/// answer is a protocol error, a TLS alert a TLS failure, anything else
/// (a reset, a broken pipe) an I/O error.
fn classify(endpoint: &Endpoint, e: &hyper::Error) -> Failure {
    // A malformed answer, or one cut short before it was complete.
    let failure = if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() || e.is_incomplete_message() {
        Failure::Protocol
    } else if tls_alert(e).is_some() {
        // With TLS 1.3 a server refuses a client certificate after the
        // client's side of the handshake: it shows on the first read.
        Failure::Tls
    } else {
        Failure::Io
    };
    endpoint.note(failure, || match tls_alert(e) {
        Some(tls) => format!("{e}: {}", tls::explain(tls)),
        None => e.to_string(),
    })
}

/// The TLS error under a hyper error, if there is one.
fn tls_alert(e: &hyper::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && let Some(tls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::HttpRoute;

    #[test]
    fn an_exchange_future_stays_small() {
        // Each heartbeat builds one and moves it into a box: its size is
        // copied per heartbeat (it was 9.5 KB with the connect path inline).
        let endpoint = Endpoint::new(
            "127.0.0.1:9".parse().unwrap(),
            "127.0.0.1",
            "/SendHeartbeat",
            [],
            Duration::from_secs(1),
            EndpointOptions::default(),
        )
        .unwrap();
        let exchange = Http::new(endpoint).exchange(None, Bytes::new().into());
        let size = std::mem::size_of_val(&exchange);
        assert!(size <= 2048, "an exchange future takes {size} bytes");
    }

    #[test]
    fn an_error_answer_s_line_quotes_its_body_cleaned_and_masked_and_says_what_to_check() {
        let endpoint = Endpoint::new(
            "127.0.0.1:9".parse().unwrap(),
            "127.0.0.1",
            "/SendHeartbeat",
            [(http::HeaderName::from_static("authorization"), HeaderValue::from_static("Bearer s3cr3t-T0KEN"))],
            Duration::from_secs(1),
            EndpointOptions::default(),
        )
        .unwrap();
        let route = HttpRoute {
            method: Method::POST,
            target: "/api/v1/meter-0042/telemetry".parse().unwrap(),
            headers: vec![(http::HeaderName::from_static("x-key"), HeaderValue::from_static("k3y one"))],
        };
        let outgoing = Outgoing { body: Bytes::new(), route: route.into() };
        let body = b"{\"message\": \"bad token s3cr3t-T0KEN\r\n for meter-0042 (k3y one)\"}\x1b[31m";
        endpoint.note_answer(401, body, &outgoing);
        endpoint.note_answer(401, b"a second 401 is not noted", &outgoing);
        endpoint.note_answer(503, &[b'x'; 300], &Bytes::new().into());
        endpoint.note_answer(200, b"not an error", &Bytes::new().into());
        let first = endpoint.first_errors();
        assert_eq!(first.keys().collect::<Vec<_>>(), ["http_401", "http_503"]);
        let line = &first["http_401"];
        assert_eq!(
            line,
            "answered 401: \"{\"message\": \"bad token *** for *** (***)\"} [31m\"; check the credentials the devices \
             send: the scenario's headers, the identities file"
        );
        let line = &first["http_503"];
        assert!(line.starts_with(&format!("answered 503: \"{}…\"; ", "x".repeat(200))), "{line}");
        assert!(line.ends_with("check the rate, and the retries (they add to it)"), "{line}");
    }

    #[tokio::test]
    async fn a_request_with_its_own_target_and_headers_goes_there_and_the_next_as_the_endpoint_s() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A loopback listener that notes each request's head and answers 200
        // on one kept connection.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut heads = Vec::new();
            let mut pending = Vec::new();
            while heads.len() < 2 {
                let mut buf = [0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client closed before its second request");
                pending.extend_from_slice(&buf[..n]);
                // Each request: its head, then a 2-byte body ("{}").
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    if pending.len() < end + 4 + 2 {
                        break;
                    }
                    heads.push(String::from_utf8(pending[..end].to_vec()).unwrap());
                    pending.drain(..end + 4 + 2);
                    socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
                }
            }
            heads
        });
        let options = EndpointOptions { keep_alive: true, ..EndpointOptions::default() };
        let endpoint = Endpoint::new(addr, "127.0.0.1", "/SendHeartbeat", [], Duration::from_secs(5), options).unwrap();
        let http = Http::new(endpoint);
        let route = HttpRoute {
            method: Method::PUT,
            target: "/api/v1/T0KEN/telemetry".parse().unwrap(),
            headers: vec![(http::HeaderName::from_static("qos-level"), HeaderValue::from_static("1"))],
        };
        let first = http.exchange(None, Outgoing { body: Bytes::from_static(b"{}"), route: route.into() }).await;
        assert_eq!(first.outcome, Outcome::Status(200));
        let second = http.exchange(first.conn, Bytes::from_static(b"{}").into()).await;
        assert_eq!(second.outcome, Outcome::Status(200));
        let heads = heads.await.unwrap();
        let lines = |h: &str| h.lines().map(str::to_ascii_lowercase).collect::<Vec<_>>();
        let (a, b) = (lines(&heads[0]), lines(&heads[1]));
        assert_eq!(a[0], "put /api/v1/t0ken/telemetry http/1.1", "{heads:?}");
        assert!(a.contains(&"qos-level: 1".to_string()) && a.contains(&"content-type: application/json".to_string()));
        assert!(a.iter().any(|l| l.starts_with("host: 127.0.0.1:")), "{a:?}");
        assert_eq!(b[0], "post /sendheartbeat http/1.1", "{heads:?}");
        assert!(!b.iter().any(|l| l.starts_with("qos-level")), "the endpoint's own request has none: {b:?}");
    }
}
