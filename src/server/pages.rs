//! A small HTTP/1.1 server for fleetstorm's own pages while a run goes
//! (`--metrics-addr`'s `/metrics`, `--dashboard`): each request answered
//! at once from the caller's state, every connection closed at `stop`.
//!
//! Bound to loopback, it answers only requests addressed to loopback (the
//! `Host` header an IP literal of loopback or `localhost`; 403 otherwise):
//! a web page elsewhere cannot point a domain of its own at 127.0.0.1 and
//! read the run through the user's browser (DNS rebinding).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

/// A page's answer to one request.
pub type Page = Response<Full<Bytes>>;

/// Serves `answer` on `addr` until `stop`; returns the bound address.
pub async fn serve_pages<F>(addr: SocketAddr, stop: CancellationToken, answer: F) -> std::io::Result<SocketAddr>
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
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let (answer, stop) = (answer.clone(), stop.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let response = answer(&req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = connection => {}
                    () = stop.cancelled() => {}
                }
            });
        }
    });
    Ok(bound)
}

/// A page of `status` with `content_type`, never cached.
pub fn page(status: hyper::StatusCode, content_type: &str, body: Vec<u8>) -> Page {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
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
        let stop = CancellationToken::new();
        let ok = |_: &Request<hyper::body::Incoming>| page(hyper::StatusCode::OK, "text/plain", b"ok".to_vec());
        let addr = serve_pages("127.0.0.1:0".parse().unwrap(), stop.clone(), ok).await.unwrap();
        assert_eq!(status_for(addr, &addr.to_string()).await, "HTTP/1.1 200 OK");
        assert_eq!(status_for(addr, "localhost").await, "HTTP/1.1 200 OK");
        assert_eq!(status_for(addr, "rebound.example").await, "HTTP/1.1 403 Forbidden");
        stop.cancel();
    }
}
