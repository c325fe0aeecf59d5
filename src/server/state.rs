//! What every connection of serve shares, whatever its protocol: how serve
//! was asked to run ([`ServeConfig`], its credentials, TLS and control
//! access) and its state ([`Shared`]: the registry, the counters, the
//! faults in force, and `GET /stats` made from them). Its own module so
//! that each listener (HTTP, MQTT) depends on it and not on the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;

use super::faults::{ActiveFaults, Faults};
use super::metrics::Metrics;
use super::registry::{self, Registry};
use crate::transport::tls::TlsError;

/// Required credentials for `POST /SendHeartbeat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer TOKEN`.
    Bearer(String),
    /// A header with an exact value.
    Header { name: ::http::HeaderName, value: ::http::HeaderValue },
}

/// How to run the reference backend.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: SocketAddr,
    pub faults: Faults,
    pub auth: Option<Auth>,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// New devices beyond this many are refused (507).
    pub max_devices: u64,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this certificate.
    pub tls: Option<ServeTls>,
    /// Connections beyond this many open at once are closed on accept.
    pub max_connections: u64,
    /// Who may use the control endpoints (and, if asked, the read ones).
    pub control: ControlAccess,
    /// The device profiles answered beside SendHeartbeat, and their
    /// devices' identities.
    pub profiles: Arc<crate::wire::serve::ServeProfiles>,
    /// Listen for MQTT 3.1.1 sessions (the `mqtt` profile) here too.
    pub mqtt: Option<SocketAddr>,
}

/// Who may use serve's control endpoints (`POST /faults`, `POST
/// /stats/reset`: they change how it answers and what it counted) and, when
/// asked, its read endpoints (`GET /stats`, `/metrics`, `/faults`,
/// `/devices/...`).
#[derive(Debug, Clone, Default)]
pub struct ControlAccess {
    /// Their own credential (`--admin-token`); without one, the
    /// heartbeats' credential guards them, and without that they are open
    /// (which [`ServeConfig::check_exposure`] allows on loopback only).
    pub credential: Option<Auth>,
    /// Guard the read endpoints too.
    pub protect_reads: bool,
    /// Allow open control endpoints on an address other than loopback.
    pub allow_open: bool,
}

impl ServeConfig {
    /// The credential the control endpoints need, if any.
    pub fn control_credential(&self) -> Option<&Auth> {
        self.control.credential.as_ref().or(self.auth.as_ref())
    }

    /// Refuses, as Redis' protected mode does, to listen beyond loopback
    /// with control endpoints anyone could use: anyone who reaches the port
    /// could switch every answer to an error or wipe the counts.
    /// Its MQTT listener beyond loopback takes the same opt-in: it would
    /// tell anyone there that this is serve, whose faults anyone can set.
    pub fn check_exposure(&self) -> Result<(), String> {
        let exposed = [Some(self.addr), self.mqtt].into_iter().flatten().find(|a| !a.ip().is_loopback());
        let Some(exposed) = exposed else { return Ok(()) };
        if self.control_credential().is_some() || self.control.allow_open {
            return Ok(());
        }
        let (flag, what) = if exposed == self.addr { ("", "") } else { (" --mqtt", " (its MQTT listener)") };
        Err(format!(
            "serve would listen on{flag} {exposed}{what} with its control endpoints (POST /faults, POST /stats/reset) \
             open to anyone who reaches it: give them a credential with --admin-token TOKEN (or guard everything \
             with --require-bearer TOKEN), listen on 127.0.0.1, or pass --allow-open-control to accept that"
        ))
    }
}

/// HTTPS for serve: a certificate chain and key (PEM), and optionally the
/// CA whose client certificates are required (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeTls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub client_ca: Option<std::path::PathBuf>,
}

impl ServeTls {
    /// The acceptor, with the files read and checked.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        use crate::transport::tls::{read_chain, read_key};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::refused("tls"))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_chain(ca, "--client-ca")? {
                    roots.add(cert).map_err(TlsError::refused(format!("--client-ca {}", ca.display())))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(TlsError::verifier(format!("--client-ca {}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(read_chain(&self.cert, "--tls-cert")?, read_key(&self.key, "--tls-key")?)
            .map_err(TlsError::refused("--tls-cert/--tls-key"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            faults: Faults::default(),
            auth: None,
            header_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            shutdown_grace: Duration::from_secs(5),
            max_devices: registry::default_max_devices(),
            tls: None,
            max_connections: 100_000,
            control: ControlAccess::default(),
            profiles: Arc::default(),
            mqtt: None,
        }
    }
}

/// State shared by every connection.
pub struct Shared {
    pub config: ServeConfig,
    pub registry: Registry,
    pub metrics: Metrics,
    /// The faults in force; replaced whole by `POST /faults`.
    pub faults: watch::Sender<Arc<ActiveFaults>>,
    /// The MQTT sessions open, by client id.
    pub client_ids: ClientIds,
    started: Instant,
}

/// The MQTT sessions open, by client id: a session opened with a client
/// id already connected ends the older one, as MQTT asks of a server
/// (and AWS IoT and Azure IoT Hub do). A std mutex: held for a map
/// operation, never across an await.
#[derive(Default)]
pub struct ClientIds {
    open: std::sync::Mutex<std::collections::HashMap<String, (u64, tokio_util::sync::CancellationToken)>>,
    next: AtomicU64,
}

/// One session's hold on its client id, given up when dropped.
pub struct ClientId<'a> {
    ids: &'a ClientIds,
    client_id: String,
    session: u64,
    /// Cancelled when a newer session takes the client id over.
    pub taken_over: tokio_util::sync::CancellationToken,
}

impl ClientIds {
    /// Takes `client_id` for a new session, ending the session that held it.
    pub fn take(&self, client_id: &str) -> ClientId<'_> {
        let session = self.next.fetch_add(1, Ordering::Relaxed);
        let taken_over = tokio_util::sync::CancellationToken::new();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, older)) = open.insert(client_id.to_string(), (session, taken_over.clone())) {
            older.cancel();
        }
        ClientId { ids: self, client_id: client_id.to_string(), session, taken_over }
    }

    /// Sessions open.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for ClientId<'_> {
    fn drop(&mut self) {
        let mut open = self.ids.open.lock().unwrap_or_else(|e| e.into_inner());
        // Unless a newer session holds it now.
        if open.get(&self.client_id).is_some_and(|(session, _)| *session == self.session) {
            open.remove(&self.client_id);
        }
    }
}

impl Shared {
    /// A backend's state, without a listener.
    pub fn new(config: ServeConfig) -> Arc<Shared> {
        let faults = watch::Sender::new(Arc::new(ActiveFaults::new(config.faults.clone())));
        Arc::new(Shared {
            registry: Registry::new(config.max_devices),
            metrics: Metrics::new(),
            faults,
            client_ids: ClientIds::default(),
            started: Instant::now(),
            config,
        })
    }

    /// The body of `GET /stats`.
    pub fn stats_json(&self) -> serde_json::Value {
        let m = &self.metrics;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let fleets: serde_json::Map<_, _> = self
            .registry
            .fleets()
            .into_iter()
            .map(|(name, f)| (name, serde_json::to_value(f).unwrap_or_default()))
            .collect();
        let responses: serde_json::Map<_, _> =
            m.statuses().into_iter().map(|(status, n)| (status.to_string(), json!(n))).collect();
        let queued = self.faults.borrow().capacity.as_ref().map_or(0, |q| q.queued(tokio::time::Instant::now()));
        let mut stats = json!({
            "accepted": load(&m.accepted),
            "rejected": load(&m.rejected),
            "devices": self.registry.devices(),
            "refused_devices": self.registry.refused(),
            "max_devices": self.registry.max_devices(),
            "fleets": fleets,
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "responses": responses,
            "injected_errors": load(&m.injected_errors),
            "dropped": load(&m.dropped),
            "shed": load(&m.shed),
            "unauthorized": load(&m.unauthorized),
            "arrivals_per_second": m.arrivals.seconds(crate::units::now_ms() / 1000)
                .into_iter()
                .map(|(second, count)| json!([second, count]))
                .collect::<Vec<_>>(),
            "served_us": m.served.summary(),
            "queued": queued,
            "in_flight": load(&m.in_flight),
            "connections": {"open": load(&m.connections_open), "total": load(&m.connections_total)},
            "protocols": {"HTTP/1.1": load(&m.http1_requests), "HTTP/2": load(&m.http2_requests)},
            "tls": {"handshakes": load(&m.tls_handshakes), "failures": load(&m.tls_failures)},
            "refused_connections": load(&m.refused_connections),
        });
        if self.config.mqtt.is_some()
            && let Some(members) = stats.as_object_mut()
        {
            members.insert("mqtt".into(), m.mqtt.json());
        }
        stats
    }
}

/// A device request (HTTP) or message (MQTT) being handled, counted in
/// `in_flight` until it is dropped (answered, or abandoned by its client):
/// one count for both listeners.
pub struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    pub fn start(shared: &'a Shared) -> Self {
        shared.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
