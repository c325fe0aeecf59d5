//! The dashboard's HTTP side: `/` the page, `/api/state?since=N` the state
//! as JSON, `/report` the final report once the run ended.
//!
//! On loopback it answers only requests addressed to loopback (the `Host`
//! header an IP literal of loopback or `localhost`): a web page elsewhere
//! cannot point a domain of its own at 127.0.0.1 and read the run through
//! the user's browser (DNS rebinding).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::{Method, Request, StatusCode};
use tokio_util::sync::CancellationToken;

use super::Dashboard;
use super::page::HTML;
use crate::server::pages::{Page, page, serve_pages};

/// Serves `dashboard` on `addr` until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    dashboard: Arc<Dashboard>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let loopback = addr.ip().is_loopback();
    serve_pages(addr, stop, move |req| {
        let host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok());
        if loopback && !addressed_to_loopback(host) {
            return page(
                StatusCode::FORBIDDEN,
                "text/plain",
                b"the dashboard answers requests to loopback only\n".to_vec(),
            );
        }
        answer(&dashboard, req)
    })
    .await
}

/// `host` (a `Host` header) names loopback: `localhost` or a loopback IP
/// literal, with or without a port.
fn addressed_to_loopback(host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn answer(dashboard: &Dashboard, req: &Request<hyper::body::Incoming>) -> Page {
    if req.method() != Method::GET {
        return page(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"only GET\n".to_vec());
    }
    match req.uri().path() {
        "/" => page(StatusCode::OK, "text/html; charset=utf-8", HTML.as_bytes().to_vec()),
        "/api/state" => {
            let since = req
                .uri()
                .query()
                .into_iter()
                .flat_map(|q| q.split('&'))
                .find_map(|kv| kv.strip_prefix("since="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            page(StatusCode::OK, "application/json", dashboard.state_json(since))
        }
        "/report" => match dashboard.report_html() {
            Some(html) => page(StatusCode::OK, "text/html; charset=utf-8", html),
            None => page(StatusCode::NOT_FOUND, "text/plain", b"the run has not ended yet\n".to_vec()),
        },
        _ => page(StatusCode::NOT_FOUND, "text/plain", b"try / or /api/state\n".to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::addressed_to_loopback;

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
}
