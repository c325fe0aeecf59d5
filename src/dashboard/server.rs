//! The dashboard's HTTP side: `/` the page, `/api/state?since=N` the state
//! as JSON, `/report` the final report once the run ended. On loopback it
//! answers only requests addressed to loopback ([`serve_pages`]).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::{Method, Request, StatusCode};

use super::Dashboard;
use super::page::HTML;
use crate::pages::{Page, Pages, page, serve_pages};

/// Serves `dashboard` on `addr` until [`Pages::close`].
pub async fn serve(addr: SocketAddr, dashboard: Arc<Dashboard>) -> std::io::Result<Pages> {
    serve_pages(addr, move |req| answer(&dashboard, req)).await
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
            Some((html, delivered)) => {
                let mut report = page(StatusCode::OK, "text/html; charset=utf-8", html);
                report.extensions_mut().insert(delivered);
                report
            }
            None => page(StatusCode::NOT_FOUND, "text/plain", b"the run has not ended yet\n".to_vec()),
        },
        _ => page(StatusCode::NOT_FOUND, "text/plain", b"try / or /api/state\n".to_vec()),
    }
}
