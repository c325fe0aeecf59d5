//! Request routing and the handlers of the reference backend.
//!
//! | route | answer |
//! |---|---|
//! | `POST /SendHeartbeat` | 200 empty when valid; 400 `ValidationException` JSON naming every violation; 401 without the required credentials; 413 above 1 MiB; 507 for a new device when the registry is full; faults as configured |
//! | a device profile's paths (`--profile`) | what that service answers (`crate::wire`'s profile modules): its success status, or its errors for bad credentials and bodies; 413 and faults as for SendHeartbeat |
//! | `GET /stats` | counters, devices and per-fleet totals as JSON |
//! | `POST /stats/reset` | zeroes counters and forgets devices |
//! | `GET /devices/{fleet}/{device}` | that device's record, or 404 |
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /faults`, `POST /faults` | the faults in force; replace them (absent members are off) |
//!
//! Bound to loopback, serve answers only requests addressed to loopback
//! (403 otherwise); the control endpoints refuse a foreign `Origin` (403)
//! and any body but `application/json` (415): see [`browser_guard`].
//!
//! The control endpoints (`POST /faults`, `POST /stats/reset`) need the
//! admin credential when one is set (`--admin-token`, or the heartbeats'
//! credential when only that is); with `--protect-reads` the read endpoints
//! do too. Without it they answer 401.
//!
//! A known path with another method gets 405 (with `Allow`); any other
//! path 404. Every JSON error is `{"message": ..., "errors": [...]}` with
//! the error type in `x-amzn-ErrorType`, as the AWS rest-json protocol has
//! it, so SDKs surface them as client errors.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, RETRY_AFTER};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use rand::RngExt;
use serde_json::json;
use tokio::time::Instant;

use super::state::{Auth, InFlight, Shared};
use crate::sagemaker_edge::validate::inspect;
use crate::server::faults::{ActiveFaults, Faults};
use crate::server::registry::RegistryFull;

/// The largest heartbeat body accepted (413 above).
pub const MAX_BODY: usize = 1024 * 1024;
/// The largest `POST /faults` body.
const MAX_FAULTS_BODY: usize = 64 * 1024;

pub type Body = Full<Bytes>;

/// A request answered by closing the connection: a dropped-connection
/// fault, or a client that went away mid-body.
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped")
    }
}

impl std::error::Error for Dropped {}

/// Answers one request.
pub async fn handle<B>(shared: Arc<Shared>, req: Request<B>) -> Result<Response<Body>, Dropped>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path();
    let method = req.method().clone();
    let refused = browser_guard(&shared, path, &method, req.headers(), req.uri())
        .or_else(|| guard(&shared, path, &method, req.headers()));
    if let Some(refused) = refused {
        shared.metrics.answered(refused.status().as_u16());
        return Ok(refused);
    }
    if let Some(route) = shared.config.profiles.route(&method, path) {
        let _in_flight = InFlight::start(&shared);
        shared.metrics.arrivals.arrived(crate::units::now_ms() / 1000);
        let started = Instant::now();
        let answer = device_request(&shared, req, Some(route)).await;
        shared.metrics.heartbeat_took(started.elapsed());
        let response = answer?;
        shared.metrics.answered(response.status().as_u16());
        return Ok(response);
    }
    let response = match path {
        "/SendHeartbeat" if method == Method::POST => {
            let _in_flight = InFlight::start(&shared);
            shared.metrics.arrivals.arrived(crate::units::now_ms() / 1000);
            let version = if req.version() == hyper::Version::HTTP_2 {
                &shared.metrics.http2_requests
            } else {
                &shared.metrics.http1_requests
            };
            version.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let started = Instant::now();
            let answer = device_request(&shared, req, None).await;
            shared.metrics.heartbeat_took(started.elapsed());
            answer?
        }
        "/SendHeartbeat" => not_allowed("POST"),
        "/stats" if method == Method::GET => json_response(StatusCode::OK, &shared.stats_json()),
        "/stats" => not_allowed("GET"),
        "/stats/reset" if method == Method::POST => {
            shared.metrics.reset();
            shared.registry.reset();
            json_response(StatusCode::OK, &json!({"reset": true}))
        }
        "/stats/reset" => not_allowed("POST"),
        "/metrics" if method == Method::GET => {
            let text = shared.metrics.render(shared.registry.devices());
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        "/metrics" => not_allowed("GET"),
        "/faults" if method == Method::GET => json_response(StatusCode::OK, &shared.faults.borrow().faults),
        "/faults" if method == Method::POST => set_faults(&shared, req).await?,
        "/faults" => not_allowed("GET, POST"),
        p if p.starts_with("/devices/") => match (method, device_record(&shared, p)) {
            (Method::GET, Some(view)) => json_response(StatusCode::OK, &view),
            (Method::GET, None) => {
                error(StatusCode::NOT_FOUND, "ResourceNotFoundException", &format!("no device at {p}"))
            }
            _ => not_allowed("GET"),
        },
        _ => error(StatusCode::NOT_FOUND, "UnknownOperationException", &format!("no route for {path}")),
    };
    shared.metrics.answered(response.status().as_u16());
    Ok(response)
}

/// What a device request carries beside its body, for a profile's check.
struct Head {
    method: Method,
    query: Option<String>,
    host: String,
    authority: String,
    path_and_query: String,
    headers: http::HeaderMap,
}

/// A device's request: a SendHeartbeat (`route` `None`) or one on a device
/// profile's path. The body is read, the faults act, then the request is
/// checked as its wire has it.
async fn device_request<B>(
    shared: &Shared,
    req: Request<B>,
    route: Option<crate::wire::serve::Route>,
) -> Result<Response<Body>, Dropped>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let head = route.as_ref().map(|_| {
        // The host a credential names: HTTP/1.1's Host, or HTTP/2's authority.
        let authority = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string);
        let authority = authority.or_else(|| req.uri().authority().map(|a| a.to_string())).unwrap_or_default();
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host.to_string(),
            _ => authority.clone(),
        };
        Head {
            method: req.method().clone(),
            query: req.uri().query().map(str::to_string),
            host: host.trim_start_matches('[').trim_end_matches(']').to_string(),
            authority,
            path_and_query: req.uri().path_and_query().map_or_else(|| "/".to_string(), |p| p.to_string()),
            headers: req.headers().clone(),
        }
    });
    if route.is_none()
        && let Some(auth) = &shared.config.auth
        && !allowed(auth, req.headers())
    {
        shared.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
        return Ok(closing(error(StatusCode::UNAUTHORIZED, "UnauthorizedException", "missing or wrong credentials")));
    }
    let body = match read_body(req, MAX_BODY, shared.config.body_timeout).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return Ok(closing(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SerializationException",
                &format!("the body exceeds {MAX_BODY} bytes"),
            )));
        }
        Err(BodyError::Timeout) => {
            return Ok(closing(error(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeoutException",
                &format!("the body did not arrive within {:?}", shared.config.body_timeout),
            )));
        }
        Err(BodyError::Broken) => return Err(Dropped),
    };

    let active: Arc<ActiveFaults> = shared.faults.borrow().clone();
    let faults = &active.faults;
    if faults.drop_rate > 0.0 && rand::rng().random::<f64>() < faults.drop_rate {
        shared.metrics.dropped_one();
        return Err(Dropped);
    }
    if let Some(stall) = faults.stall {
        super::faults::wait_out_stall(&shared.faults, stall).await;
    }
    if let Some(queue) = &active.capacity {
        match queue.admit(Instant::now()) {
            Some(finish) => tokio::time::sleep_until(finish).await,
            None => {
                shared.metrics.shed.fetch_add(1, Ordering::Relaxed);
                return Ok(retry_later(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    "capacity queue is full",
                )));
            }
        }
    }
    if let Some(latency) = &faults.latency {
        let delay = latency.sample(&mut rand::rng());
        super::faults::precise_sleep(delay).await;
    }
    if faults.error_rate > 0.0 && rand::rng().random::<f64>() < faults.error_rate {
        shared.metrics.injected_errors.fetch_add(1, Ordering::Relaxed);
        return Ok(injected_error(faults));
    }

    if let (Some(route), Some(head)) = (&route, &head) {
        let now_ms = crate::units::now_ms();
        let request = crate::wire::serve::DeviceRequest {
            method: &head.method,
            query: head.query.as_deref(),
            host: &head.host,
            authority: &head.authority,
            path_and_query: &head.path_and_query,
            headers: &head.headers,
            body: &body,
            now_s: now_ms / 1000,
        };
        let checked = shared.config.profiles.check(route, &request);
        return Ok(match checked {
            Ok(accepted) => {
                let recorded =
                    shared.registry.record_device(&accepted.fleet, &accepted.device, &accepted.agent_version, now_ms);
                let version = match recorded {
                    Ok(version) => version,
                    Err(full) => return Ok(registry_full(full)),
                };
                shared.metrics.accepted.fetch_add(1, Ordering::Relaxed);
                match accepted.document {
                    // The accepted document, its version the device's count of them.
                    Some(state) => json_response(
                        accepted.status,
                        &json!({"state": state, "metadata": {}, "version": version, "timestamp": now_ms / 1000}),
                    ),
                    None => {
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = accepted.status;
                        r
                    }
                }
            }
            Err(refused) => {
                let counter =
                    if refused.unauthorized() { &shared.metrics.unauthorized } else { &shared.metrics.rejected };
                counter.fetch_add(1, Ordering::Relaxed);
                let mut r = Response::new(Full::new(Bytes::from(refused.body)));
                *r.status_mut() = refused.status;
                r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(refused.content_type));
                if let Some(allow) = refused.allow {
                    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
                }
                if let Some(kind) = refused.error_type {
                    r.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
                }
                r
            }
        });
    }
    match inspect(&body) {
        Ok(summary) => {
            if let Err(full) = shared.registry.record(&summary, &body, crate::units::now_ms()) {
                return Ok(registry_full(full));
            }
            shared.metrics.accepted.fetch_add(1, Ordering::Relaxed);
            Ok(Response::new(Full::new(Bytes::new())))
        }
        Err(violations) => {
            shared.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            let errors: Vec<_> =
                violations.list.iter().map(|v| json!({"path": v.path, "reason": v.reason.to_string()})).collect();
            let n = violations.total;
            let message = format!("{n} validation error{} detected: {violations}", if n == 1 { "" } else { "s" });
            let mut r = json_response(StatusCode::BAD_REQUEST, &json!({"message": message, "errors": errors}));
            r.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static("ValidationException"));
            Ok(r)
        }
    }
}

/// The answer to a new device's request when the registry is full: 507
/// (the device cannot be stored; retrying will not help), naming the cap.
fn registry_full(full: RegistryFull) -> Response<Body> {
    let message = match full {
        RegistryFull::Devices(n) => format!(
            "serve's device registry is full ({n} devices, --max-devices): this device is new and was refused; \
             known devices are still answered"
        ),
        RegistryFull::Fleets(n) => format!(
            "serve's device registry holds {n} fleets, its most: this device's fleet is new and was refused; \
             known fleets are still answered"
        ),
    };
    error(StatusCode::INSUFFICIENT_STORAGE, "DeviceLimitExceededException", &message)
}

fn injected_error(faults: &Faults) -> Response<Body> {
    let status = StatusCode::from_u16(faults.error_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status.as_u16() {
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        s if s >= 500 => "InternalServiceException",
        _ => "InjectedFaultException",
    };
    let r = error(status, kind, "injected fault");
    if matches!(status.as_u16(), 429 | 503) { retry_later(r) } else { r }
}

/// Whether `(method, path)` is a control endpoint: one that changes how
/// serve answers or what it counted.
fn is_control(method: &Method, path: &str) -> bool {
    matches!((method, path), (&Method::POST, "/faults" | "/stats/reset"))
}

/// The guard against web pages in the user's browser, before any other:
/// - bound to loopback, every request must be addressed to loopback (its
///   `Host`, and HTTP/2's authority, `localhost` or a loopback IP, as
///   [`crate::pages`] has it; 403 otherwise): a page cannot point
///   a domain of its own at 127.0.0.1 (DNS rebinding) and reach serve
///   through the browser;
/// - a control request must not come from a foreign page (an `Origin`
///   other than loopback or serve's own Host, `null` included; 403), and
///   must say `Content-Type: application/json` (415 otherwise): a page may
///   send a form or `text/plain` POST anywhere without asking, but JSON
///   only after a CORS preflight, which serve never grants.
fn browser_guard(
    shared: &Shared,
    path: &str,
    method: &Method,
    headers: &http::HeaderMap,
    uri: &http::Uri,
) -> Option<Response<Body>> {
    use crate::pages::addressed_to_loopback;
    // A Host that is not text names nothing: refused as not loopback.
    let host = headers.get(HOST).map(|h| h.to_str().unwrap_or_default());
    if shared.config.addr.ip().is_loopback() {
        let names = [host, uri.authority().map(http::uri::Authority::as_str)];
        let addressed =
            names.iter().any(Option::is_some) && names.iter().flatten().all(|n| addressed_to_loopback(Some(n)));
        if !addressed {
            return Some(error(
                StatusCode::FORBIDDEN,
                "ForbiddenException",
                "serve on loopback answers requests addressed to loopback only (Host: 127.0.0.1, [::1] or \
                 localhost, with the port)",
            ));
        }
    }
    if !is_control(method, path) {
        return None;
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let from = origin.to_str().unwrap_or_default();
        let site = from.strip_prefix("http://").or_else(|| from.strip_prefix("https://")).unwrap_or_default();
        let own = !site.is_empty()
            && !site.contains('/')
            && (addressed_to_loopback(Some(site)) || host.is_some_and(|h| h.eq_ignore_ascii_case(site)));
        if !own {
            return Some(error(
                StatusCode::FORBIDDEN,
                "ForbiddenException",
                &format!("{method} {path} refuses requests from a web page (Origin: {})", printable(from)),
            ));
        }
    }
    let media = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media = media.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        let given = if media.is_empty() { "none".to_string() } else { printable(media) };
        return Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaTypeException",
            &format!("{method} {path} needs Content-Type: application/json (given: {given})"),
        ));
    }
    None
}

/// A header's text for a message: at most 100 characters, controls and
/// quotes dropped.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control() && *c != '"').take(100).collect()
}

/// The control endpoints' guard: a 401 for a request to one (or, when
/// asked, to a read endpoint) without the control credential.
fn guard(shared: &Shared, path: &str, method: &Method, headers: &http::HeaderMap) -> Option<Response<Body>> {
    let control = is_control(method, path);
    let read =
        *method == Method::GET && (matches!(path, "/stats" | "/metrics" | "/faults") || path.starts_with("/devices/"));
    let guarded = control || (read && shared.config.control.protect_reads);
    let credential = shared.config.control_credential()?;
    (guarded && !allowed(credential, headers)).then(|| {
        shared.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
        error(
            StatusCode::UNAUTHORIZED,
            "UnauthorizedException",
            "this endpoint needs serve's admin credential (Authorization: Bearer TOKEN)",
        )
    })
}

/// Whether `headers` carry `auth`, compared in constant time (a wrong
/// token takes as long to refuse whatever it shares with the right one).
fn allowed(auth: &Auth, headers: &http::HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    let same = |given: &[u8], expected: &[u8]| bool::from(given.ct_eq(expected));
    match auth {
        Auth::Bearer(token) => headers
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|t| same(t, token.as_bytes())),
        Auth::Header { name, value } => headers.get(name).is_some_and(|v| same(v.as_bytes(), value.as_bytes())),
    }
}

enum BodyError {
    TooLarge,
    Timeout,
    Broken,
}

async fn read_body<B>(req: Request<B>, limit: usize, timeout: Duration) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match tokio::time::timeout(timeout, Limited::new(req.into_body(), limit).collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Ok(Err(_)) => Err(BodyError::Broken),
    }
}

async fn set_faults<B>(shared: &Shared, req: Request<B>) -> Result<Response<Body>, Dropped>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let body = match read_body(req, MAX_FAULTS_BODY, shared.config.body_timeout).await {
        Ok(b) => b,
        Err(BodyError::Broken) => return Err(Dropped),
        Err(_) => {
            return Ok(closing(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "SerializationException",
                "faults body too large",
            )));
        }
    };
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, "ValidationException", &format!("bad faults: {e}"))),
    };
    if let Err(e) = faults.check() {
        return Ok(error(StatusCode::BAD_REQUEST, "ValidationException", &format!("bad faults: {e}")));
    }
    let response = json_response(StatusCode::OK, &faults);
    shared.faults.send_replace(Arc::new(ActiveFaults::new(faults)));
    Ok(response)
}

fn device_record(shared: &Shared, path: &str) -> Option<crate::server::registry::DeviceView> {
    let rest = path.strip_prefix("/devices/")?;
    let (fleet, device) = rest.split_once('/')?;
    shared.registry.device(fleet, device)
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, kind: &'static str, message: &str) -> Response<Body> {
    let mut r = json_response(status, &json!({"message": message, "errors": []}));
    r.headers_mut().insert("x-amzn-ErrorType", HeaderValue::from_static(kind));
    r
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowedException", &format!("use {allow}"));
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// Marks a response as closing the connection: the request body may be
/// unread, so the connection cannot carry another request.
fn closing(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

fn retry_later(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    r
}
