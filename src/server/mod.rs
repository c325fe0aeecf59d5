//! `fleetstorm serve`: the reference heartbeat backend.
//!
//! It exists so that fleetstorm runs out of the box (`url = "builtin"`
//! starts it in-process on a loopback port, with its MQTT listener for
//! `mqtt` fleets) and so that tests have a backend whose behaviour is
//! known: strict validation, a device registry, introspection, and faults
//! that act out a slow, failing or saturated production backend.
//!
//! # Shape
//!
//! [`Server::bind`] binds the listener; [`Server::run`] accepts until the
//! `shutdown` future completes, then stops accepting and waits (at most
//! `shutdown_grace`) for in-flight requests. [`spawn`] does both on the
//! current runtime and returns the address and a [`RunningServer`] handle,
//! for in-process use.
//!
//! Each connection is served by hyper-util's `auto` builder (HTTP/1.1 with
//! keep-alive, or HTTP/2 with prior knowledge, h2c) in its own task.
//! Nothing a client does can keep that task alive forever:
//! - HTTP/1 request heads must arrive within `header_timeout` (hyper's
//!   header-read timer; it also runs while a kept-alive connection waits
//!   for its next request, so it is the keep-alive timeout too, and its
//!   default is long, as nginx's keepalive_timeout of 75 s);
//! - bodies must arrive within `body_timeout` (408 otherwise);
//! - a connection on which no byte moves for `idle_timeout` while no
//!   request is in flight is closed (this also covers clients that connect
//!   and send nothing, which never reach hyper's timers, and idle HTTP/2
//!   connections).
//!
//! With [`ServeConfig::mqtt`], an MQTT 3.1.1 and 5 listener ([`mqtt`]) runs
//! beside the HTTP one, sharing its registry, counters and faults;
//! `/stats`, `/metrics` and `/faults` stay on HTTP.

mod arrivals;
mod faults;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod http;
mod metrics;
pub mod mqtt;
mod registry;
mod served;
mod state;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub use faults::{ActiveFaults, CapacityQueue, Faults, Latency};
pub use http::MAX_BODY;
pub use metrics::Metrics;
pub use registry::{DeviceView, FleetView, ModelView, Registry, RegistryFull, default_max_devices};
pub use state::{Auth, ClientId, ClientIds, ControlAccess, ServeConfig, ServeTls, Shared};

/// A bound, not yet running, reference backend.
pub struct Server {
    listener: TcpListener,
    /// The MQTT listener, when asked for.
    mqtt: Option<TcpListener>,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Binds `config.addr` (port 0 picks a free port).
    pub async fn bind(config: ServeConfig) -> io::Result<Server> {
        config.faults.check().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = match &config.tls {
            Some(t) => Some(t.acceptor().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?),
            None => None,
        };
        let listener = TcpListener::bind(config.addr).await?;
        let mqtt =
            match config.mqtt {
                Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                    io::Error::new(e.kind(), format!("the MQTT listener cannot listen on {addr}: {e}"))
                })?),
                None => None,
            };
        let shared = Shared::new(config);
        Ok(Server { listener, mqtt, shared, tls })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The MQTT listener's address, when there is one.
    pub fn mqtt_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.mqtt.as_ref().map(TcpListener::local_addr).transpose()
    }

    /// The state, for in-process introspection.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting and waits
    /// up to `shutdown_grace` for in-flight requests.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, mqtt, shared, tls } = self;
        let builder = connection_builder(&shared.config);
        let graceful = GracefulShutdown::new();
        let stop_mqtt = tokio_util::sync::CancellationToken::new();
        let mqtt = mqtt.map(|listener| tokio::spawn(mqtt::run(listener, shared.clone(), stop_mqtt.clone())));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        if shared.metrics.connections_open.load(Ordering::Relaxed) >= shared.config.max_connections {
                            shared.metrics.refused_connections.fetch_add(1, Ordering::Relaxed);
                            drop(stream);
                            continue;
                        }
                        serve_connection(stream, &builder, &graceful, &shared, tls.as_ref())
                    }
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a little and go on.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                },
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        stop_mqtt.cancel();
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(shared.config.shutdown_grace) => {}
        }
        // The MQTT sessions have the same grace, in their own task.
        if let Some(mqtt) = mqtt {
            let _ = mqtt.await;
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    shared: &Arc<Shared>,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let tracked = Tracked { inner: stream, activity: activity.clone() };
    match tls {
        None => serve_io(TokioIo::new(tracked), activity, builder, graceful, shared),
        Some(acceptor) => {
            // The handshake runs in its own task, bounded like a request head.
            let (acceptor, builder, shared) = (acceptor.clone(), builder.clone(), shared.clone());
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let limit = shared.config.header_timeout.min(Duration::from_secs(10));
                match tokio::time::timeout(limit, acceptor.accept(tracked)).await {
                    Ok(Ok(stream)) => {
                        shared.metrics.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                        serve_watched(TokioIo::new(stream), activity, &builder, watcher, &shared);
                    }
                    _ => {
                        shared.metrics.tls_failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    }
}

fn serve_io<I>(
    io: TokioIo<I>,
    activity: Arc<Activity>,
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    shared: &Arc<Shared>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_watched(io, activity, builder, graceful.watcher(), shared);
}

/// How every connection is served: HTTP/1.1 with keep-alive and a head
/// timeout, or HTTP/2; heads capped at 64 KiB.
fn connection_builder(config: &ServeConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(1024);
    builder
}

/// Serves HTTP on one stream of any kind until it closes: the request path
/// of a TCP connection (hyper's parsing, routing, validation, registry),
/// for fuzzing and in-memory tests.
pub async fn serve_stream<I>(shared: Arc<Shared>, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = connection_builder(&shared.config);
    let service = service_fn(move |req| http::handle(shared.clone(), req));
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

/// Serves one connection's requests until it closes, goes idle, or
/// shutdown ends it.
fn serve_watched<I>(
    io: TokioIo<I>,
    activity: Arc<Activity>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    shared: &Arc<Shared>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let shared = shared.clone();
        let activity = activity.clone();
        service_fn(move |req| {
            let shared = shared.clone();
            let in_flight = InFlight::start(&activity);
            async move {
                let answer = http::handle(shared, req).await;
                drop(in_flight);
                answer
            }
        })
    };
    let connection = watcher.watch(builder.serve_connection(io, service).into_owned());
    let idle_timeout = shared.config.idle_timeout;
    let shared = shared.clone();
    shared.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
    shared.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        tokio::select! {
            _ = connection => {}
            () = activity.idle_for(idle_timeout) => {}
        }
        shared.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
    });
}

/// When a connection last moved a byte, and how many of its requests are
/// in flight.
struct Activity {
    origin: Instant,
    /// Milliseconds since `origin` of the last read or write.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity { origin: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        self.last_ms.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `limit` with no request in flight.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            let wake = deadline.max(Instant::now() + Duration::from_millis(100));
            tokio::time::sleep_until(wake.into()).await;
        }
    }
}

struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket that notes each read and write in its [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A reference backend running on the current tokio runtime.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// The MQTT listener's address, when it has one.
    pub mqtt_addr: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, waits for in-flight requests (bounded by the grace
    /// period) and returns once the server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Binds and starts a reference backend on the current runtime.
pub async fn spawn(config: ServeConfig) -> io::Result<RunningServer> {
    let server = Server::bind(config).await?;
    let addr = server.local_addr()?;
    let mqtt_addr = server.mqtt_addr()?;
    let shared = server.shared();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok(RunningServer { addr, mqtt_addr, shared, stop: Some(stop), task })
}
