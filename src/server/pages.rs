//! A small HTTP/1.1 server for fleetstorm's own pages while a run goes
//! (`--metrics-addr`'s `/metrics`, `--dashboard`): each request answered
//! at once from the caller's state, every connection closed at `stop`.

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
    let answer = Arc::new(answer);
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
