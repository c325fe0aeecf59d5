//! The dashboard's HTTP side: `/` the page, `/api/state?since=N` the state
//! as JSON, `/report` the final report once the run ended.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use super::Dashboard;
use super::page::HTML;

/// Serves `dashboard` on `addr` until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    dashboard: Arc<Dashboard>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let dashboard = dashboard.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let response = answer(&dashboard, &req);
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

fn answer(dashboard: &Dashboard, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, kind: &str, body: Vec<u8>| {
        Response::builder()
            .status(status)
            .header("content-type", kind)
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"only GET\n".to_vec());
    }
    match req.uri().path() {
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", HTML.as_bytes().to_vec()),
        "/api/state" => {
            let since = req
                .uri()
                .query()
                .into_iter()
                .flat_map(|q| q.split('&'))
                .find_map(|kv| kv.strip_prefix("since="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            reply(StatusCode::OK, "application/json", dashboard.state_json(since))
        }
        "/report" => match dashboard.report_html() {
            Some(html) => reply(StatusCode::OK, "text/html; charset=utf-8", html),
            None => reply(StatusCode::NOT_FOUND, "text/plain", b"the run has not ended yet\n".to_vec()),
        },
        _ => reply(StatusCode::NOT_FOUND, "text/plain", b"try / or /api/state\n".to_vec()),
    }
}
