//! The client side: how a device's message reaches its target, behind
//! one seam for every protocol.
//!
//! [`Transport`] is what the engine's workers need: given a connection (or
//! none) and a message, do one exchange and hand back its [`Outcome`] and
//! the connection if it can carry another. Workers own connections and
//! decide who uses which (per device, a shared pool, or none), so a
//! transport holds no shared connection state. Each protocol is a folder
//! beside this file: [`http`] (plain HTTP/1.1 through its lean client, TLS
//! and HTTP/2 through hyper, SigV4). What protocols share is here: where a
//! message goes ([`route`]), a device's session and its idle work
//! ([`session`], [`Transport::sessions`], [`Transport::idles`]), TLS client
//! configuration ([`tls`]), local ports and source addresses ([`ports`]),
//! kernel receive stamps (`arrival`) and the settings every protocol reads
//! ([`settings`]). Tests drive the engine under a paused clock with one
//! fake (`testing`), which can also be a transport with sessions shaped
//! like MQTT's.

mod arrival;
pub mod http;
pub mod mqtt;
pub mod ports;
pub mod route;
pub mod session;
pub mod settings;
#[cfg(test)]
pub mod testing;
pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::stats::{Failure, Outcome};
pub use http::{Endpoint, EndpointError, EndpointOptions, Http, HttpConn, Signer};
pub use route::{HttpRoute, MqttRoute, Protocol, Qos, Route};
pub use session::{Closed, HandBack, HandBackCall, Identity, Idle, LastWill, Reconnect};
pub use tls::TlsClient;

/// What one heartbeat sends: its body and its [`Route`]: the endpoint's
/// own request, or (a device profile's per-device request target and
/// credentials) where and with which extra headers. `From<Bytes>` gives
/// the endpoint's own request, the one every `SendHeartbeat` fleet sends:
/// the same bytes as without it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub body: Bytes,
    pub route: Route,
}

impl Outgoing {
    /// Whether the message carries its intended time (an observed MQTT
    /// message): the worker then gives it with [`Outgoing::stamp`].
    pub fn wants_stamp(&self) -> bool {
        matches!(&self.route, Route::Mqtt(r) if r.observed.is_some())
    }

    /// Gives an observed message its intended time (nanoseconds since the
    /// UNIX epoch); no other message takes one.
    pub fn stamp(&mut self, intended_epoch_ns: u64) {
        if let Route::Mqtt(r) = &mut self.route
            && r.observed.is_some()
        {
            r.observed = Some(intended_epoch_ns);
        }
    }
}

impl From<Bytes> for Outgoing {
    fn from(body: Bytes) -> Outgoing {
        Outgoing { body, route: Route::Endpoint }
    }
}

/// One heartbeat exchange at a time per connection (or many, on a
/// multiplexed one).
///
/// A transport with sessions (MQTT) says so ([`Transport::sessions`]):
/// the worker then opens each device's connection itself, with
/// [`Transport::connect`] and the device's [`Identity`], before the
/// exchange that needs it, so an exchange always gets a session. One with
/// idle work ([`Transport::idles`]) has each device's session, between its
/// heartbeats, waited on with [`Transport::idle`], which sends its
/// keep-alives and reads what comes in. HTTP has neither: the worker
/// builds no identity and polls nothing for it.
pub trait Transport: Send + Sync + 'static {
    /// A connection that can carry heartbeats.
    type Conn: Send + 'static;

    /// Sends one heartbeat over `conn` (connecting first if it is `None` or
    /// closed) and returns the outcome, with the connection when it can be
    /// used again. Finishes within the transport's timeout.
    fn exchange(
        &self,
        conn: Option<Self::Conn>,
        outgoing: Outgoing,
    ) -> impl Future<Output = Exchange<Self::Conn>> + Send + 'static;

    /// Whether one connection carries many exchanges at once (HTTP/2), so
    /// that a pool shares its connections rather than lending them out.
    fn multiplexed(&self) -> bool {
        false
    }

    /// Another handle on a multiplexed connection, or on a device's
    /// session that carries several of its heartbeats at once
    /// ([`Transport::window`]).
    fn share(&self, _conn: &Self::Conn) -> Option<Self::Conn> {
        None
    }

    /// How many of its device's heartbeats the session `conn` carries at
    /// once (MQTT's in-flight window: messages awaiting their
    /// acknowledgement). Above 1, each of them goes on a
    /// [share](Transport::share) of the session, which stays in its
    /// device's place; at 1 (HTTP, and the default) an exchange takes its
    /// device's connection and gives it back.
    fn window(&self, _conn: &Self::Conn) -> u16 {
        1
    }

    /// Whether a connection can no longer carry exchanges.
    fn is_closed(&self, _conn: &Self::Conn) -> bool {
        false
    }

    /// Opens a connection for `identity`'s device, with what opening it
    /// took, to be counted as an exchange's would be; or why it could not
    /// be had: a failure without an answer, or the far end's refusal in
    /// its class with its code (an MQTT CONNACK's bad credentials). A session transport's devices each open theirs with their
    /// own identity; a pool made ready before a synchronized start opens
    /// connections that are no device's (`Identity::default()`), which an
    /// HTTP connection never asks about.
    fn connect(
        &self,
        _identity: Identity,
    ) -> impl Future<Output = Result<(Self::Conn, Connected), Outcome>> + Send + 'static {
        std::future::ready(Err(Outcome::Failed(Failure::Connect)))
    }

    /// Whether a connection is one device's session, opened with its
    /// identity ([`Transport::connect`]) by the worker rather than by the
    /// exchange: then every exchange is given one. False for HTTP, whose
    /// hot path builds no identity. Sessions are per device (no pooling,
    /// `../shared/DESIGN.md`): such a transport is meant for per-device
    /// connections, the only mode whose idle sessions are waited on.
    fn sessions(&self) -> bool {
        false
    }

    /// Whether an idle session has work of its own (keep-alives, what the
    /// far end pushes), so that the worker waits on [`Transport::idle`]
    /// between a device's heartbeats. False for HTTP: its idle
    /// connections are left alone.
    fn idles(&self) -> bool {
        false
    }

    /// Ends `conn` as its device goes offline: with the protocol's
    /// goodbye first if `goodbye` (MQTT's DISCONNECT: the broker then
    /// publishes no Will), else dropped as a device that lost its power or
    /// its network drops it. The default drops it.
    fn close(&self, conn: Self::Conn, goodbye: bool) -> impl Future<Output = ()> + Send + 'static {
        let _ = goodbye;
        drop(conn);
        std::future::ready(())
    }

    /// How a device reopens its session once it lost it, if the
    /// transport's devices do at once ([`Reconnect`]); `None` (HTTP, and
    /// a session transport told not to): at its next heartbeat.
    fn reconnect(&self) -> Option<Reconnect> {
        None
    }

    /// The most sessions opened per second across the run, if the
    /// target limits it (a broker's admission rate); `None`: each opened
    /// as its device needs it.
    fn connect_rate(&self) -> Option<f64> {
        None
    }

    /// The first message of each kind of failure seen so far (by class,
    /// and by error code where the protocol has them), for the report.
    fn first_errors(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Waits on the idle session `conn` until something happens on it,
    /// `until` (just before the device's next heartbeat) or the worker's
    /// call for it (`handback`: the heartbeat is due), whichever comes
    /// first; does what the session needs meanwhile (a keep-alive that
    /// falls due is sent); and hands the session back, unless the far end
    /// closed it, with what ended the wait (`Until` for the last two). The
    /// worker waits again after a `Keepalive` or an `Inbound` until
    /// `until`; nothing else uses the session while it waits. The default
    /// (for a transport that says it [`idles`](Transport::idles) without
    /// overriding this) has nothing to do and waits for either end.
    fn idle(
        &self,
        conn: Self::Conn,
        until: tokio::time::Instant,
        handback: HandBack,
    ) -> impl Future<Output = (Option<Self::Conn>, Idle)> + Send + 'static {
        async move {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = handback => {}
            }
            (Some(conn), Idle::Until)
        }
    }
}

/// The result of one exchange.
pub struct Exchange<C> {
    pub outcome: Outcome,
    /// The connection, if it may carry the next heartbeat.
    pub conn: Option<C>,
    /// The answer's `Retry-After`, in seconds, if it had one.
    pub retry_after: Option<Duration>,
    /// Set when this exchange opened its connection.
    pub connected: Option<Connected>,
    /// When the answer reached this machine (the kernel's receive stamp),
    /// if the transport knows: the generator may read it later than that.
    pub answered_at: Option<Instant>,
}

/// A connection opened for an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// How long the TLS handshake took, on an `https://` target.
    pub tls_handshake: Option<Duration>,
    /// How long opening a device's session took, from its connect to the
    /// far end's acceptance (TCP, and an MQTT CONNECT to its CONNACK): a
    /// session transport's.
    pub session: Option<Duration>,
}

impl<C> Exchange<C> {
    /// An exchange that ended without a usable answer.
    pub fn failed(failure: Failure) -> Self {
        Exchange::ended(Outcome::Failed(failure))
    }

    /// An exchange that ended with `outcome` and no connection to go on
    /// with (a session refused at its opening).
    pub fn ended(outcome: Outcome) -> Self {
        Exchange { outcome, conn: None, retry_after: None, connected: None, answered_at: None }
    }
}
