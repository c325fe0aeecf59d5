//! MQTT behind the [`Transport`] seam: each device's own session with a
//! broker (MQTT 3.1.1 over TCP), opened with the device's [`Identity`]
//! (its name as the client id, its user name and password), one PUBLISH
//! per heartbeat, timed to its PUBACK (QoS 1) or to its write (QoS 0), and
//! between heartbeats the session's own work: a PINGREQ when it has been
//! quiet for its keep-alive, and whatever the broker sends unasked.
//!
//! # The codec
//!
//! Packets are read and written by rumqttc's public `mqttbytes` modules
//! (`Packet::read`/`write` on a `BytesMut`, no I/O of their own), driven
//! by fleetstorm's own worker: a session is a socket and two small buffers,
//! polled where the worker polls its exchanges. rumqttc's own client was
//! not used: its `EventLoop` gives each client a task, a channel, framed
//! buffers and an event queue (tens of KiB a connection, for fleets of a
//! hundred thousand sessions) and has no place for a heartbeat's intended
//! time. The packet modules are the most used MQTT codec in Rust and are
//! tested against brokers by their own project.
//! Measured: a connected, idle device costs about 3.4 KB of user space in
//! all (its state, its session, its idle wait; `benches/mqtt_memory.sh`,
//! BENCHMARKS.md), in-flight window included: an idle session keeps no
//! write buffer and nothing on the heap for what it awaits.
//!
//! # Outcomes
//!
//! A PUBACK is [`Outcome::Answered`] `ok` (a 3.1.1 PUBACK carries no
//! code); a CONNACK that refuses the session is the heartbeat's outcome,
//! in the class of its return code ([`mqtt_class`]) with the code
//! (`codes.mqtt`). A PUBACK that has not come by the target's timeout is a
//! timeout; the session stays open, and a PUBACK that comes later is read
//! as an inbound message.

mod codec;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod observe;
pub mod settings;
mod stream;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;

use super::route::{Qos, Route};
use super::tls::{self, TlsClient};
use super::{Closed, Connected, Exchange, HandBack, Identity, Idle, Outgoing, Transport, ports};
use crate::stats::{Code, Failure, Outcome, OutcomeClass, PerClass, mqtt_class};
pub use codec::meaning;
use codec::{Inbound, Out, Unread};
pub use settings::{DEFAULT_IN_FLIGHT, MqttSettings, MqttVersion};
use stream::MqttStream;

/// The largest packet a session reads or writes: a device backend's
/// packets to a device are small; a larger one is a protocol failure.
const MAX_PACKET: usize = 1 << 20;

/// The most a session's write buffer keeps between packets: enough for a
/// keep-alive or an acknowledgement, not a message.
const KEPT_WRITE_BUFFER: usize = 64;

/// Where and how sessions are opened: resolved once when a run starts.
#[derive(Debug)]
pub struct MqttEndpoint {
    pub addr: SocketAddr,
    /// A heartbeat (and a session's opening) must finish within this.
    pub timeout: Duration,
    pub settings: MqttSettings,
    /// The local addresses and ports new sessions leave from.
    pub ports: ports::LocalPorts,
    /// TLS over each session's TCP (`mqtts://`), with the target's
    /// `[target.tls]` (its CA, a client certificate for mutual TLS).
    pub tls: Option<TlsClient>,
    /// The first message of each class of failure, for the report.
    first_errors: PerClass<OnceLock<String>>,
}

impl MqttEndpoint {
    pub fn new(addr: SocketAddr, timeout: Duration, settings: MqttSettings, sources: &[IpAddr]) -> MqttEndpoint {
        let ports = ports::LocalPorts::new(sources, addr, ports::PortRange::of_this_machine());
        MqttEndpoint { addr, timeout, settings, ports, tls: None, first_errors: PerClass::default() }
    }

    /// Sessions go over TLS with `tls` (an `mqtts://` target).
    pub fn with_tls(self, tls: Option<TlsClient>) -> MqttEndpoint {
        MqttEndpoint { tls, ..self }
    }

    /// Notes `message` as the first of `outcome`'s class, if it is (no
    /// lock: once a class has its message, the rest cost one atomic load).
    fn note(&self, outcome: Outcome, message: impl FnOnce() -> String) -> Outcome {
        let first = &self.first_errors[outcome.class()];
        if first.get().is_none() {
            let _ = first.set(message());
        }
        outcome
    }
}

/// The MQTT transport (module docs).
#[derive(Debug, Clone)]
pub struct Mqtt {
    endpoint: Arc<MqttEndpoint>,
}

impl Mqtt {
    pub fn new(endpoint: MqttEndpoint) -> Mqtt {
        Mqtt { endpoint: Arc::new(endpoint) }
    }

    /// Where its sessions go, for an observer's own session.
    pub fn endpoint(&self) -> Arc<MqttEndpoint> {
        self.endpoint.clone()
    }

    /// A message's (and a session opening's) timeout.
    pub fn timeout(&self) -> Duration {
        self.endpoint.timeout
    }
}

/// One device's session with its broker, as a handle. A session that
/// carries several messages at once (its [window](Transport::window): the
/// target's `in_flight`, at most the broker's Receive Maximum) is shared by
/// their exchanges ([`Transport::share`]): each writes its PUBLISH on the
/// writing side and waits for its own acknowledgement; whichever exchange
/// holds the reading side reads one packet at a time for all of them and
/// settles each acknowledgement with the message it is for, with the
/// instant it came (its exchange's answer time).
#[derive(Clone)]
pub struct MqttConn(Arc<Session>);

/// A session's state (see [`MqttConn`]).
struct Session {
    version: MqttVersion,
    /// The largest packet the broker takes: its CONNACK's Maximum Packet
    /// Size (MQTT 5), or the most a session writes.
    max_out: usize,
    /// The session's keep-alive: the device's, or the one the broker set
    /// (MQTT 5's Server Keep Alive).
    keep_alive: Duration,
    /// What the broker's CONNACK said it does not take (MQTT 5's Maximum
    /// QoS 0, Retain Available 0): a message that asks for it is not sent.
    qos_0_only: bool,
    no_retain: bool,
    /// How many messages may await their acknowledgement at once.
    window: u16,
    /// Where the device's messages ask their answers to go (subscribed
    /// when the session opened).
    response_topic: Option<String>,
    writer: tokio::sync::Mutex<Writer>,
    reader: tokio::sync::Mutex<Reader>,
    /// The messages awaiting their acknowledgement or answer (at most the
    /// window), with what came for each so far: one in place, without an
    /// allocation a session would keep.
    awaiting: std::sync::Mutex<SmallVec<[Awaited; 1]>>,
    pings: std::sync::Mutex<Pings>,
    /// The connection broke, or the broker closed it: every exchange on
    /// it fails, and its device opens another.
    broken: AtomicBool,
}

/// A session's writing side: each packet is encoded in `buf`, and the
/// identifiers it hands out. A buffer that held a message is let go once
/// it is written: an idle session keeps none (a heartbeat's PUBLISH is
/// most of a kilobyte, and a fleet of idle sessions would keep one each).
struct Writer {
    half: WriteHalf<MqttStream>,
    buf: BytesMut,
    next_pkid: u16,
    /// The last Correlation Data given.
    correlation: u64,
}

/// A session's reading side: what has been read of the next packet.
struct Reader {
    half: ReadHalf<MqttStream>,
    buf: BytesMut,
}

/// When the session's keep-alives fall due.
#[derive(Debug, Clone, Copy)]
struct Pings {
    /// When a packet last went out (a keep-alive is due a keep-alive
    /// interval after it).
    last_sent: Instant,
    /// When a PINGREQ went that has had no PINGRESP yet: the broker is
    /// gone if none comes within a keep-alive interval.
    sent: Option<Instant>,
}

/// A message awaiting its acknowledgement (QoS 1) and its answer (with a
/// response topic).
#[derive(Debug, Clone, Copy)]
struct Awaited {
    /// 0 at QoS 0.
    pkid: u16,
    correlation: Option<u64>,
    /// Its PUBACK's reason code, once it came (0 at QoS 0 and in 3.1.1).
    acked: Option<u8>,
    answered: bool,
    /// When the last of what it awaits came.
    at: Option<Instant>,
}

impl Awaited {
    /// Whether nothing more is awaited: acknowledged and answered, or
    /// refused.
    fn settled(&self) -> bool {
        matches!(self.acked, Some(r) if r >= 0x80) || (self.acked.is_some() && self.answered)
    }
}

/// What a session read: a packet, or why there is none.
enum Read {
    Packet(Inbound),
    /// The broker closed the connection, with a DISCONNECT or without.
    Closed(Closed),
    Failed(Failure),
}

impl Writer {
    /// The next packet identifier: 1 to 65,535, in turn (0 is not one).
    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }
}

impl Session {
    fn new(stream: MqttStream, settings: &MqttSettings) -> Session {
        let (read, write) = tokio::io::split(stream);
        Session {
            version: settings.version,
            max_out: MAX_PACKET,
            keep_alive: settings.keep_alive,
            qos_0_only: false,
            no_retain: false,
            window: settings.in_flight,
            response_topic: None,
            writer: tokio::sync::Mutex::new(Writer { half: write, buf: BytesMut::new(), next_pkid: 0, correlation: 0 }),
            reader: tokio::sync::Mutex::new(Reader { half: read, buf: BytesMut::with_capacity(64) }),
            awaiting: std::sync::Mutex::new(SmallVec::new()),
            pings: std::sync::Mutex::new(Pings { last_sent: Instant::now(), sent: None }),
            broken: AtomicBool::new(false),
        }
    }

    fn broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    fn pings(&self) -> std::sync::MutexGuard<'_, Pings> {
        self.pings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn awaiting(&self) -> std::sync::MutexGuard<'_, SmallVec<[Awaited; 1]>> {
        self.awaiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encodes `packet` in `w`: `Err` with its size if it is over what the
    /// broker takes (or cannot be encoded).
    fn encode(&self, w: &mut Writer, packet: Out<'_>) -> Result<(), usize> {
        let size = packet_size(&packet);
        codec::write(self.version, packet, &mut w.buf, self.max_out).map_err(|()| size)
    }

    /// Writes what [`Self::encode`] made.
    async fn flush_out(&self, w: &mut Writer) -> Result<(), Failure> {
        let written = async {
            w.half.write_all(&w.buf).await?;
            // A TLS record may wait in its session's buffer otherwise.
            w.half.flush().await
        };
        let written = written.await;
        if w.buf.capacity() > KEPT_WRITE_BUFFER {
            w.buf = BytesMut::new();
        } else {
            w.buf.clear();
        }
        if written.is_err() {
            self.broken.store(true, Ordering::Relaxed);
            return Err(Failure::Io);
        }
        self.pings().last_sent = Instant::now();
        Ok(())
    }

    async fn send(&self, packet: Out<'_>) -> Result<(), Failure> {
        let mut w = self.writer.lock().await;
        self.encode(&mut w, packet).map_err(|_| Failure::Protocol)?;
        self.flush_out(&mut w).await
    }

    /// The next whole packet the broker sent.
    async fn next(&self) -> Read {
        let mut r = self.reader.lock().await;
        self.read(&mut r).await
    }

    /// The next whole packet on the reading side `r` (cancel-safe: what
    /// was read stays in its buffer). A session whose reading ends is
    /// broken.
    async fn read(&self, r: &mut Reader) -> Read {
        let read = loop {
            match codec::read(self.version, &mut r.buf, MAX_PACKET) {
                Ok(Inbound::Disconnect { reason }) => break Read::Closed(Closed::Disconnect(reason)),
                Ok(Inbound::PingResp) => {
                    self.pings().sent = None;
                    return Read::Packet(Inbound::PingResp);
                }
                Ok(packet) => return Read::Packet(packet),
                Err(Unread::Incomplete) => {}
                Err(Unread::Malformed) => break Read::Failed(Failure::Protocol),
            }
            match r.half.read_buf(&mut r.buf).await {
                Ok(0) => break Read::Closed(Closed::EndOfStream),
                Ok(_) => {}
                Err(_) => break Read::Failed(Failure::Io),
            }
        };
        self.broken.store(true, Ordering::Relaxed);
        read
    }

    /// Answers what the broker sent unasked, where MQTT asks for an answer
    /// (a QoS 1 PUBLISH is acknowledged).
    async fn answer(&self, packet: &Inbound) -> Result<(), Failure> {
        match packet {
            Inbound::Publish(p) if p.qos == Qos::AtLeastOnce => self.send(Out::PubAck { pkid: p.pkid }).await,
            _ => Ok(()),
        }
    }

    /// Notes what came for a message awaiting it: a PUBACK, or an answer
    /// carrying its Correlation Data. Anything else (a PUBACK that came
    /// after its message timed out) is nobody's.
    fn arrived(&self, packet: &Inbound) {
        let now = Instant::now();
        let mut awaiting = self.awaiting();
        match packet {
            Inbound::PubAck { pkid, reason } => {
                if let Some(a) = awaiting.iter_mut().find(|a| a.pkid == *pkid && a.acked.is_none()) {
                    (a.acked, a.at) = (Some(*reason), Some(now));
                }
            }
            Inbound::Publish(d) => {
                let correlation = d.correlation.as_deref().and_then(|c| <[u8; 8]>::try_from(c).ok());
                let correlation = correlation.map(u64::from_be_bytes);
                if let Some(a) = awaiting.iter_mut().find(|a| correlation.is_some() && a.correlation == correlation) {
                    (a.answered, a.at) = (true, Some(now));
                }
            }
            _ => {}
        }
    }

    /// Takes the message `key`'s entry if it is settled.
    fn take_settled(&self, key: (u16, Option<u64>)) -> Option<Awaited> {
        let mut awaiting = self.awaiting();
        let at = awaiting.iter().position(|a| (a.pkid, a.correlation) == key && a.settled())?;
        Some(awaiting.swap_remove(at))
    }

    /// Forgets the message `key` (it timed out, or its session broke).
    fn forget(&self, key: (u16, Option<u64>)) {
        self.awaiting().retain(|a| (a.pkid, a.correlation) != key);
    }

    /// Waits until the message `key` is settled: reads the session's
    /// packets one at a time while no other exchange does (the reading
    /// side is handed on, in turn, after each), answering what asks for an
    /// answer and noting what came for whom.
    async fn settle(&self, key: (u16, Option<u64>)) -> Result<Awaited, Failure> {
        loop {
            if let Some(done) = self.take_settled(key) {
                return Ok(done);
            }
            if self.broken() {
                return Err(Failure::Io);
            }
            let mut r = self.reader.lock().await;
            // Settled (or broken) by another while this one waited its turn.
            if let Some(done) = self.take_settled(key) {
                return Ok(done);
            }
            if self.broken() {
                return Err(Failure::Io);
            }
            match self.read(&mut r).await {
                Read::Packet(packet) => {
                    // Noted before the reading side is handed on, so that
                    // the next to take it finds what came for it.
                    self.arrived(&packet);
                    drop(r);
                    self.answer(&packet).await?;
                }
                Read::Closed(_) => return Err(Failure::Io),
                Read::Failed(f) => return Err(f),
            }
        }
    }
}

/// A packet's size as encoded, for a message that is too large.
fn packet_size(packet: &Out<'_>) -> usize {
    match packet {
        Out::Publish(p) => {
            let request = p.request.as_ref().map_or(0, |(t, d)| t.len() + d.len() + 6);
            p.topic.len() + p.payload.len() + request + 10
        }
        _ => 0,
    }
}

/// What an idle wait wakes for, if nothing comes first.
#[derive(Clone, Copy)]
enum Wake {
    /// The device's heartbeat.
    Until,
    /// A keep-alive is due.
    Ping,
    /// The answer to the last keep-alive is overdue.
    PingOverdue,
}

/// What to check when a broker refuses with `code`.
fn what_to_check(version: MqttVersion, code: u8) -> &'static str {
    match (version, code) {
        (MqttVersion::V311, 1) | (_, 0x84) => "the broker's MQTT versions ([target.mqtt] version)",
        (MqttVersion::V311, 2) | (_, 0x85) => "the devices' names (MQTT client ids)",
        (MqttVersion::V311, 3) | (_, 0x88 | 0x89) => "the broker's state and limits",
        (MqttVersion::V311, 4) | (_, 0x86) => "the identities file's username and password columns",
        (MqttVersion::V311, 5) | (_, 0x87 | 0x8a) => {
            "the identities file's username and password columns, and the broker's ACLs"
        }
        (_, 0x97 | 0x9f) => "the broker's connection limits, and [target.mqtt] connect_rate",
        (_, 0x9c | 0x9d) => "the target's address (the broker sends devices elsewhere)",
        _ => "the broker's log",
    }
}

/// The outcome of a CONNACK that refused a session, noted with what the
/// code means and what to check.
fn refused(endpoint: &MqttEndpoint, ack: &codec::ConnAck) -> Outcome {
    let (v, n) = (endpoint.settings.version, ack.code);
    let outcome = Outcome::Answered { class: mqtt_class(n), code: Some(Code::Mqtt(n)) };
    endpoint.note(outcome, || {
        let said = ack.reason.as_deref().map(|r| format!(", saying {r:?}")).unwrap_or_default();
        format!(
            "the broker refused a session's CONNECT: {} code {n} ({}{said}); check {}",
            if v == MqttVersion::V311 { "return" } else { "reason" },
            meaning(v, n),
            what_to_check(v, n)
        )
    })
}

/// Opens `identity`'s session: TCP (no Nagle: QoS 1 latencies would come
/// in 40 ms steps), TLS on an `mqtts://` target (its handshake timed),
/// CONNECT, CONNACK.
async fn open(endpoint: &MqttEndpoint, identity: Identity) -> Result<(MqttConn, Option<Duration>), Outcome> {
    let addr = endpoint.addr;
    let tcp = endpoint.ports.connect(addr).await.map_err(|e| {
        endpoint.note(Outcome::Failed(Failure::Connect), || match e {
            ports::ConnectError::Connect(e) => format!("cannot connect to {addr}: {e}"),
            other => other.to_string(),
        })
    })?;
    let _ = tcp.set_nodelay(true);
    let (stream, handshake) = match &endpoint.tls {
        None => (MqttStream::Plain(tcp), None),
        Some(tls) => {
            let began = Instant::now();
            let stream = tls.connector.connect(tls.server_name.clone(), tcp).await.map_err(|e| {
                endpoint.note(Outcome::Failed(Failure::Tls), || match tls::rustls_error(&e) {
                    Some(tls) => format!("TLS handshake with {addr} failed: {}", tls::explain(tls)),
                    None => format!("TLS handshake with {addr} failed: {e}"),
                })
            })?;
            (MqttStream::Tls(Box::new(stream)), Some(began.elapsed()))
        }
    };
    Ok((start(endpoint, stream, identity).await?, handshake))
}

/// Starts `identity`'s session on `stream` (connected, TLS done if any):
/// CONNECT, CONNACK, and the subscription to its response topic if its
/// messages ask for answers. Apart from [`open`] so that any stream will
/// do (the fuzz target's in-memory broker).
async fn start(endpoint: &MqttEndpoint, stream: MqttStream, identity: Identity) -> Result<MqttConn, Outcome> {
    let addr = endpoint.addr;
    let s = &endpoint.settings;
    let mut conn = Session::new(stream, s);
    let connect = codec::Connect {
        client_id: &identity.device,
        keep_alive: s.keep_alive.as_secs().min(u64::from(u16::MAX)) as u16,
        clean_start: s.clean_start,
        session_expiry: s.session_expiry.as_secs().min(u64::from(u32::MAX)) as u32,
        login: identity.username.as_deref().map(|u| (u, identity.password.as_deref().unwrap_or_default())),
        will: identity.will.as_ref(),
    };
    conn.send(Out::Connect(connect))
        .await
        .map_err(|f| endpoint.note(Outcome::Failed(f), || format!("writing a session's CONNECT to {addr} failed")))?;
    match conn.next().await {
        Read::Packet(Inbound::ConnAck(ack)) if ack.code == 0 => {
            if let Some(max) = ack.maximum_packet_size {
                conn.max_out = conn.max_out.min(max as usize);
            }
            if let Some(k) = ack.server_keep_alive.filter(|k| *k > 0) {
                conn.keep_alive = Duration::from_secs(u64::from(k));
            }
            // The broker's Receive Maximum bounds the window (absent: 65,535).
            if let Some(most) = ack.receive_maximum.filter(|m| *m > 0) {
                conn.window = conn.window.min(most);
            }
            conn.qos_0_only = ack.maximum_qos == Some(0);
            conn.no_retain = ack.retain_available == Some(0);
        }
        Read::Packet(Inbound::ConnAck(ack)) => return Err(refused(endpoint, &ack)),
        // Nothing else may come before the CONNACK.
        Read::Packet(p) => {
            return Err(endpoint.note(Outcome::Failed(Failure::Protocol), || {
                format!("the broker at {addr} answered a CONNECT with {p:?}, not a CONNACK")
            }));
        }
        Read::Closed(_) => {
            return Err(endpoint.note(Outcome::Failed(Failure::Io), || {
                format!("the broker at {addr} closed the connection before its CONNACK")
            }));
        }
        Read::Failed(f) => {
            return Err(endpoint.note(Outcome::Failed(f), || {
                format!(
                    "reading the CONNACK from {addr} failed ({f:?}: a broken connection, or bytes that are not MQTT {})",
                    s.version
                )
            }));
        }
    }
    if let Some(topic) = identity.response_topic {
        subscribe(endpoint, &conn, &topic).await?;
        conn.response_topic = Some(topic);
    }
    Ok(MqttConn(Arc::new(conn)))
}

/// Subscribes a session to its device's response topic (QoS 1), before
/// its first message: a refusal is the opening's outcome, in the class of
/// the broker's code.
async fn subscribe(endpoint: &MqttEndpoint, conn: &Session, topic: &str) -> Result<(), Outcome> {
    let addr = endpoint.addr;
    let pkid = conn.writer.lock().await.pkid();
    let broken = |f: Failure| {
        endpoint.note(Outcome::Failed(f), || format!("subscribing a session to its response topic at {addr} failed"))
    };
    conn.send(Out::Subscribe { pkid, filter: topic, qos: Qos::AtLeastOnce }).await.map_err(broken)?;
    loop {
        match conn.next().await {
            Read::Packet(Inbound::SubAck { pkid: p, codes }) if p == pkid => {
                let code = codes.first().copied().unwrap_or(0x80);
                if code < 0x80 {
                    return Ok(());
                }
                let outcome = Outcome::Answered { class: mqtt_class(code), code: Some(Code::Mqtt(code)) };
                return Err(endpoint.note(outcome, || {
                    format!(
                        "the broker refused a device's subscription to its response topic {topic:?}: reason code \
                         {code} ({}); check the broker's ACLs for [fleets.mqtt] response_topic",
                        meaning(conn.version, code)
                    )
                }));
            }
            Read::Packet(packet) => conn.answer(&packet).await.map_err(broken)?,
            Read::Closed(_) => return Err(broken(Failure::Io)),
            Read::Failed(f) => return Err(broken(f)),
        }
    }
}

/// Publishes `outgoing` on `conn` and waits for its acknowledgement (at
/// QoS 1) and its answer (with a response topic), reading and answering
/// whatever else comes meanwhile (for the session's other messages too);
/// with the instant the last of them came. `Err` if the session broke.
async fn publish(
    endpoint: &MqttEndpoint,
    conn: &Session,
    outgoing: Outgoing,
    key: &mut Option<(u16, Option<u64>)>,
) -> Result<(Outcome, Option<Instant>), Failure> {
    let Route::Mqtt(route) = outgoing.route else { return Err(Failure::Protocol) };
    if conn.broken() {
        return Err(Failure::Io);
    }
    if (route.qos == Qos::AtLeastOnce && conn.qos_0_only) || (route.retain && conn.no_retain) {
        // Not sent: the broker would end the session for it (MQTT 5's
        // 0x9B QoS not supported, 0x9A retain not supported).
        let outcome = endpoint.note(Outcome::Failed(Failure::Protocol), || {
            if route.qos == Qos::AtLeastOnce && conn.qos_0_only {
                "the broker takes QoS 0 only (its CONNACK's Maximum QoS): the fleet's QoS 1 messages were not sent; \
                 write [fleets.mqtt] qos = 0"
                    .into()
            } else {
                "the broker takes no retained messages (its CONNACK's Retain Available is 0): the fleet's messages \
                 were not sent; write [fleets.mqtt] retain = false"
                    .into()
            }
        });
        return Ok((outcome, None));
    }
    let mut w = conn.writer.lock().await;
    let pkid = if route.qos == Qos::AtLeastOnce { w.pkid() } else { 0 };
    let correlation = conn.response_topic.is_some().then(|| {
        w.correlation += 1;
        w.correlation
    });
    let request = conn.response_topic.clone().zip(correlation.map(|c| Bytes::copy_from_slice(&c.to_be_bytes())));
    let publish = codec::Publish {
        topic: route.topic,
        qos: route.qos,
        retain: route.retain,
        pkid,
        payload: outgoing.body,
        request,
        stamp: route.observed.map(observe::stamp),
    };
    if let Err(size) = conn.encode(&mut w, Out::Publish(publish)) {
        // Not sent: the broker would end the session for it.
        let max = conn.max_out;
        let outcome = endpoint.note(Outcome::Failed(Failure::Protocol), || {
            format!(
                "a message of about {size} bytes is over the most the broker takes ({max} bytes, its CONNACK's \
                 Maximum Packet Size): it was not sent; make the fleet's payload or topic shorter"
            )
        });
        return Ok((outcome, None));
    }
    let qos_0 = route.qos == Qos::AtMostOnce;
    if qos_0 && correlation.is_none() {
        conn.flush_out(&mut w).await?;
        // Written is all QoS 0 gives: no latency.
        return Ok((Outcome::Sent, None));
    }
    // Awaited from before it goes: another exchange may read its PUBACK.
    let awaited = Awaited { pkid, correlation, acked: qos_0.then_some(0), answered: correlation.is_none(), at: None };
    conn.awaiting().push(awaited);
    *key = Some((pkid, correlation));
    conn.flush_out(&mut w).await?;
    drop(w);
    let settled = conn.settle((pkid, correlation)).await?;
    *key = None;
    match settled.acked {
        Some(reason) if reason >= 0x80 => {
            let outcome = Outcome::Answered { class: mqtt_class(reason), code: Some(Code::Mqtt(reason)) };
            let outcome = endpoint.note(outcome, || {
                format!("the broker refused a message: PUBACK reason code {reason} ({})", meaning(conn.version, reason))
            });
            Ok((outcome, settled.at))
        }
        _ => Ok((Outcome::Answered { class: OutcomeClass::Ok, code: None }, settled.at)),
    }
}

impl Transport for Mqtt {
    type Conn = MqttConn;

    fn exchange(
        &self,
        conn: Option<MqttConn>,
        outgoing: Outgoing,
    ) -> impl Future<Output = Exchange<MqttConn>> + Send + 'static {
        let endpoint = self.endpoint.clone();
        async move {
            // The worker opens every session before its first message.
            let Some(conn) = conn else { return Exchange::failed(Failure::Protocol) };
            // The message awaited, while it is (forgotten if it is given up).
            let mut key = None;
            let published = tokio::time::timeout(endpoint.timeout, publish(&endpoint, &conn.0, outgoing, &mut key));
            let result = published.await;
            if let Some(key) = key {
                conn.0.forget(key);
            }
            match result {
                Ok(Ok((outcome, at))) => {
                    Exchange { conn: Some(conn), answered_at: at.map(Instant::into_std), ..Exchange::ended(outcome) }
                }
                Ok(Err(failure)) => {
                    endpoint.note(Outcome::Failed(failure), || match failure {
                        Failure::Protocol => "a message's route was not MQTT's, or the broker sent bytes that are \
                                              not MQTT"
                            .into(),
                        _ => format!("a session with {} broke during a publish (closed or reset)", endpoint.addr),
                    });
                    Exchange::failed(failure)
                }
                // No acknowledgement in time: the session goes on (a late
                // PUBACK is read as inbound).
                Err(_) => {
                    endpoint.note(Outcome::Failed(Failure::Timeout), || {
                        let what = if conn.0.response_topic.is_some() { "PUBACK or answer" } else { "PUBACK" };
                        format!("no {what} within the target's timeout ({:?}); the session goes on", endpoint.timeout)
                    });
                    Exchange { conn: Some(conn), ..Exchange::failed(Failure::Timeout) }
                }
            }
        }
    }

    fn share(&self, conn: &MqttConn) -> Option<MqttConn> {
        Some(conn.clone())
    }

    fn is_closed(&self, conn: &MqttConn) -> bool {
        conn.0.broken()
    }

    fn window(&self, conn: &MqttConn) -> u16 {
        conn.0.window
    }

    fn connect(
        &self,
        identity: Identity,
    ) -> impl Future<Output = Result<(MqttConn, Connected), Outcome>> + Send + 'static {
        let endpoint = self.endpoint.clone();
        async move {
            let began = Instant::now();
            match tokio::time::timeout(endpoint.timeout, open(&endpoint, identity)).await {
                Ok(Ok((conn, tls_handshake))) => {
                    Ok((conn, Connected { tls_handshake, session: Some(began.elapsed()) }))
                }
                Ok(Err(refused)) => Err(refused),
                Err(_) => Err(endpoint.note(Outcome::Failed(Failure::Timeout), || {
                    format!(
                        "opening a session with {} took over the target's timeout ({:?})",
                        endpoint.addr, endpoint.timeout
                    )
                })),
            }
        }
    }

    fn sessions(&self) -> bool {
        true
    }

    fn first_errors(&self) -> BTreeMap<String, String> {
        let e = &self.endpoint;
        e.first_errors.iter().filter_map(|(class, first)| first.get().map(|m| (class.to_string(), m.clone()))).collect()
    }

    fn close(&self, conn: MqttConn, goodbye: bool) -> impl Future<Output = ()> + Send + 'static {
        let timeout = self.endpoint.timeout;
        async move {
            if goodbye {
                // DISCONNECT: the broker discards the device's Will.
                let _ = tokio::time::timeout(timeout, async {
                    let mut w = conn.0.writer.lock().await;
                    if conn.0.encode(&mut w, Out::Disconnect).is_ok() && conn.0.flush_out(&mut w).await.is_ok() {
                        let _ = w.half.shutdown().await;
                    }
                })
                .await;
            }
            // Dropped: the connection closes without a word, as a device
            // that lost its power or network leaves it (the broker
            // publishes its Will).
        }
    }

    fn connect_rate(&self) -> Option<f64> {
        self.endpoint.settings.connect_rate
    }

    fn reconnect(&self) -> Option<super::Reconnect> {
        self.endpoint.settings.reconnect
    }

    fn idles(&self) -> bool {
        true
    }

    fn idle(
        &self,
        conn: MqttConn,
        until: Instant,
        handback: HandBack,
    ) -> impl Future<Output = (Option<MqttConn>, Idle)> + Send + 'static {
        idle(conn, until, handback)
    }
}

/// [`Transport::idle`] for a session: it goes back unless the wait ended it.
async fn idle(conn: MqttConn, until: Instant, mut handback: HandBack) -> (Option<MqttConn>, Idle) {
    let (kept, what) = wait_idle(&conn.0, until, &mut handback).await;
    (kept.then_some(conn), what)
}

/// Waits on the idle session `s` (see [`Transport::idle`]): whether the
/// session goes on, and what ended the wait. It holds the session's
/// reading side throughout (nothing else reads an idle session), so that a
/// waiting device's state holds no lock's waiting place.
async fn wait_idle(s: &Session, until: Instant, handback: &mut HandBack) -> (bool, Idle) {
    let broken = (false, Idle::Closed(Closed::Broken));
    // An exchange still reading it (none should be): nothing to wait for.
    let Ok(mut r) = s.reader.try_lock() else { return (true, Idle::Until) };
    loop {
        // The first of: the device's next heartbeat, a keep-alive due
        // (none while one awaits its answer), the broker's answer to one
        // overdue.
        let pings = *s.pings();
        let (due, what) = match pings.sent {
            Some(sent) => (sent + s.keep_alive, Wake::PingOverdue),
            None => (pings.last_sent + s.keep_alive, Wake::Ping),
        };
        let (wake, what) = if until <= due { (until, Wake::Until) } else { (due, what) };
        tokio::select! {
            // The device's heartbeat is due: its session goes back now.
            () = &mut *handback => return (true, Idle::Until),
            () = tokio::time::sleep_until(wake) => {
                return match what {
                    Wake::Until => (true, Idle::Until),
                    Wake::PingOverdue => (false, Idle::Closed(Closed::KeepaliveMissed)),
                    Wake::Ping => match s.send(Out::PingReq).await {
                        Ok(()) => {
                            let mut pings = s.pings();
                            pings.sent = Some(pings.last_sent);
                            (true, Idle::Keepalive)
                        }
                        Err(_) => broken,
                    },
                };
            }
            read = s.read(&mut r) => match read {
                Read::Packet(Inbound::PingResp) => continue,
                Read::Packet(packet) => {
                    drop(r);
                    return match s.answer(&packet).await {
                        Ok(()) => (true, Idle::Inbound),
                        Err(_) => broken,
                    };
                }
                Read::Closed(why) => return (false, Idle::Closed(why)),
                Read::Failed(_) => return broken,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    //! The transport against a broker played by the test on a loopback
    //! port, packet by packet (the same codec), so that each answer a
    //! broker can give comes when the test says.
    use super::*;
    use crate::transport::MqttRoute;
    use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PubAck};
    use rumqttc::mqttbytes::{Error as CodecError, QoS};
    use rumqttc::v5::mqttbytes::v5;
    use tokio::net::{TcpListener, TcpStream};

    /// The broker's end of one session.
    struct Far {
        stream: TcpStream,
        read: BytesMut,
    }

    impl Far {
        async fn accept(listener: &TcpListener) -> Far {
            let (stream, _) = listener.accept().await.unwrap();
            Far { stream, read: BytesMut::new() }
        }

        async fn next(&mut self) -> Option<Packet> {
            loop {
                match Packet::read(&mut self.read, MAX_PACKET) {
                    Ok(p) => return Some(p),
                    Err(CodecError::InsufficientBytes(_)) => {}
                    Err(e) => panic!("the client sent a bad packet: {e}"),
                }
                if self.stream.read_buf(&mut self.read).await.unwrap() == 0 {
                    return None;
                }
            }
        }

        async fn send(&mut self, packet: Packet) {
            let mut out = BytesMut::new();
            packet.write(&mut out, MAX_PACKET).unwrap();
            self.stream.write_all(&out).await.unwrap();
        }
    }

    async fn transport(keep_alive: Duration) -> (Mqtt, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let settings = MqttSettings { keep_alive, ..MqttSettings::default() };
        let endpoint = MqttEndpoint::new(listener.local_addr().unwrap(), Duration::from_secs(2), settings, &[]);
        (Mqtt::new(endpoint), listener)
    }

    fn identity() -> Identity {
        Identity { device: "d-1".into(), username: Some("u".into()), password: Some("p".into()), ..Identity::default() }
    }

    fn message(topic: &str, qos: Qos) -> Outgoing {
        Outgoing {
            body: bytes::Bytes::from_static(b"{\"x\":1}"),
            route: MqttRoute { topic: topic.into(), qos, retain: false, observed: None }.into(),
        }
    }

    #[tokio::test]
    async fn a_session_opens_with_the_device_s_identity_and_each_message_is_timed_to_its_puback() {
        let (mqtt, listener) = transport(Duration::from_secs(60)).await;
        let broker = tokio::spawn(async move {
            let mut far = Far::accept(&listener).await;
            let Some(Packet::Connect(c)) = far.next().await else { panic!("CONNECT first") };
            assert_eq!(c.client_id, "d-1");
            let login = c.login.expect("the device's login");
            assert_eq!((login.username.as_str(), login.password.as_str()), ("u", "p"));
            assert!(c.clean_session);
            assert_eq!(c.keep_alive, 60);
            far.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))).await;
            let mut topics = Vec::new();
            for _ in 0..2 {
                let Some(Packet::Publish(p)) = far.next().await else { panic!("PUBLISH") };
                assert_eq!((p.qos, p.payload.as_ref()), (QoS::AtLeastOnce, b"{\"x\":1}".as_ref()));
                topics.push(p.topic.clone());
                // Something unasked first, then the acknowledgement.
                far.send(Packet::PingResp).await;
                far.send(Packet::PubAck(PubAck::new(p.pkid))).await;
            }
            topics
        });
        let (conn, _) = mqtt.connect(identity()).await.unwrap();
        let first = mqtt.exchange(Some(conn), message("t/d-1", Qos::AtLeastOnce)).await;
        assert_eq!(first.outcome, Outcome::Answered { class: OutcomeClass::Ok, code: None });
        let second = mqtt.exchange(first.conn, message("t/d-1/b", Qos::AtLeastOnce)).await;
        assert_eq!(second.outcome, Outcome::Answered { class: OutcomeClass::Ok, code: None });
        assert!(second.conn.is_some(), "the session goes on");
        assert_eq!(broker.await.unwrap(), ["t/d-1", "t/d-1/b"]);
    }

    #[tokio::test]
    async fn messages_in_flight_at_once_are_each_settled_by_their_own_puback_in_any_order() {
        let (mqtt, listener) = transport(Duration::from_secs(60)).await;
        let broker = tokio::spawn(async move {
            let mut far = Far::accept(&listener).await;
            let Some(Packet::Connect(_)) = far.next().await else { panic!("CONNECT first") };
            far.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))).await;
            // All three come before any is acknowledged: they are in
            // flight together.
            let mut pkids = Vec::new();
            for _ in 0..3 {
                let Some(Packet::Publish(p)) = far.next().await else { panic!("PUBLISH") };
                pkids.push((p.topic.clone(), p.pkid));
            }
            pkids.sort();
            // Acknowledged last first, with a message to the device between.
            far.send(Packet::PubAck(PubAck::new(pkids[2].1))).await;
            far.send(Packet::PingResp).await;
            far.send(Packet::PubAck(PubAck::new(pkids[0].1))).await;
            far.send(Packet::PubAck(PubAck::new(pkids[1].1))).await;
            // Then the session breaks with one more in flight.
            let Some(Packet::Publish(_)) = far.next().await else { panic!("PUBLISH") };
            pkids
        });
        let (conn, _) = mqtt.connect(identity()).await.unwrap();
        assert_eq!(mqtt.window(&conn), DEFAULT_IN_FLIGHT, "3.1.1: the configured window");
        let send = |topic: &'static str| mqtt.exchange(mqtt.share(&conn), message(topic, Qos::AtLeastOnce));
        let (a, b, c) = tokio::join!(send("t/a"), send("t/b"), send("t/c"));
        let ok = Outcome::Answered { class: OutcomeClass::Ok, code: None };
        assert_eq!([a.outcome, b.outcome, c.outcome], [ok, ok, ok]);
        // Each timed to its own acknowledgement: c's came first.
        let [a, b, c] = [a, b, c].map(|e| e.answered_at.expect("when its PUBACK came"));
        assert!(c <= a && a <= b, "{c:?} {a:?} {b:?}");
        // The broker goes away with a message in flight: it fails, and
        // the session is closed for every handle on it.
        let broken = mqtt.exchange(mqtt.share(&conn), message("t/d", Qos::AtLeastOnce)).await;
        let pkids = broker.await.unwrap();
        assert_eq!(pkids.iter().map(|(_, id)| *id).collect::<std::collections::BTreeSet<_>>().len(), 3, "{pkids:?}");
        assert_eq!((broken.outcome, broken.conn.is_none()), (Outcome::Failed(Failure::Io), true));
        assert!(mqtt.is_closed(&conn));
        assert!(conn.0.awaiting().is_empty(), "nothing left awaited");
    }

    #[tokio::test]
    async fn a_refused_connect_is_its_heartbeat_s_outcome_in_its_class_with_its_code() {
        let (mqtt, listener) = transport(Duration::from_secs(60)).await;
        tokio::spawn(async move {
            let mut far = Far::accept(&listener).await;
            let _connect = far.next().await;
            far.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized, false))).await;
        });
        let refused = mqtt.connect(identity()).await.err().expect("refused");
        assert_eq!(refused, Outcome::Answered { class: OutcomeClass::Auth, code: Some(Code::Mqtt(5)) });
    }

    #[tokio::test]
    async fn an_idle_session_keeps_alive_reads_a_late_puback_and_sees_the_broker_close_it() {
        let (mqtt, listener) = transport(Duration::from_secs(1)).await;
        let (late_tx, late_rx) = tokio::sync::oneshot::channel::<()>();
        let broker = tokio::spawn(async move {
            let mut far = Far::accept(&listener).await;
            let _connect = far.next().await;
            far.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))).await;
            let Some(Packet::Publish(p)) = far.next().await else { panic!("PUBLISH") };
            // Acknowledged only once the client has given up on it.
            late_rx.await.unwrap();
            far.send(Packet::PubAck(PubAck::new(p.pkid))).await;
            // Then the client's keep-alive, answered; then closed.
            let Some(Packet::PingReq) = far.next().await else { panic!("PINGREQ") };
            far.send(Packet::PingResp).await;
            far.send(Packet::Disconnect).await;
        });
        let (conn, _) = mqtt.connect(identity()).await.unwrap();
        let timed_out = {
            // A short timeout for this message alone.
            let quick = Mqtt::new(MqttEndpoint { timeout: Duration::from_millis(200), ..clone_endpoint(&mqtt) });
            quick.exchange(Some(conn), message("t", Qos::AtLeastOnce)).await
        };
        assert_eq!(timed_out.outcome, Outcome::Failed(Failure::Timeout));
        let conn = timed_out.conn.expect("the session stays after a timeout");
        late_tx.send(()).unwrap();
        let far_future = Instant::now() + Duration::from_secs(30);
        let (_kept, handback) = HandBack::pair();
        let (conn, what) = mqtt.idle(conn, far_future, handback).await;
        assert_eq!(what, Idle::Inbound, "the late PUBACK");
        let (_kept, handback) = HandBack::pair();
        let (conn, what) = mqtt.idle(conn.unwrap(), far_future, handback).await;
        assert_eq!(what, Idle::Keepalive);
        let (_kept, handback) = HandBack::pair();
        let (conn, what) = mqtt.idle(conn.unwrap(), far_future, handback).await;
        assert_eq!(
            what,
            Idle::Closed(Closed::Disconnect(None)),
            "the broker's DISCONNECT (the PINGRESP read on the way)"
        );
        assert!(conn.is_none());
        broker.await.unwrap();
    }

    /// A broker that stops answering keep-alives is given up on: a
    /// keep-alive interval after the unanswered PINGREQ, the session ends
    /// as "keep-alive unanswered" (as a device's client library would).
    #[tokio::test]
    async fn a_session_whose_keep_alive_goes_unanswered_ends_a_keep_alive_later() {
        let (mqtt, listener) = transport(Duration::from_secs(1)).await;
        let broker = tokio::spawn(async move {
            let mut far = Far::accept(&listener).await;
            let _connect = far.next().await;
            far.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))).await;
            let Some(Packet::PingReq) = far.next().await else { panic!("PINGREQ") };
            // Never answered; held open until the client goes.
            far.next().await
        });
        let (conn, _) = mqtt.connect(identity()).await.unwrap();
        let far_future = Instant::now() + Duration::from_secs(30);
        let (_kept, handback) = HandBack::pair();
        let (conn, what) = mqtt.idle(conn, far_future, handback).await;
        assert_eq!(what, Idle::Keepalive);
        let pinged = Instant::now();
        let (_kept, handback) = HandBack::pair();
        let (conn, what) = mqtt.idle(conn.unwrap(), far_future, handback).await;
        assert_eq!((what, conn.is_none()), (Idle::Closed(Closed::KeepaliveMissed), true));
        assert!(pinged.elapsed() >= Duration::from_millis(900), "a keep-alive interval after the PINGREQ");
        assert!(broker.await.unwrap().is_none(), "the client closed its end");
    }

    /// The worker's call ends an idle wait at once, the session whole
    /// (its heartbeat is due; the wait's own end is far off).
    #[tokio::test]
    async fn an_idle_session_goes_back_at_once_when_its_device_s_heartbeat_calls_for_it() {
        let (mqtt, listener) = transport(Duration::from_secs(60)).await;
        let broker = tokio::spawn(async move {
            let mut far = Far::accept(&listener).await;
            let _connect = far.next().await;
            far.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))).await;
            let Some(Packet::Publish(p)) = far.next().await else { panic!("PUBLISH after the wait") };
            far.send(Packet::PubAck(PubAck::new(p.pkid))).await;
            far
        });
        let (conn, _) = mqtt.connect(identity()).await.unwrap();
        let (call, handback) = HandBack::pair();
        let wait = tokio::spawn(mqtt.idle(conn, Instant::now() + Duration::from_secs(30), handback));
        call.call();
        let (conn, what) = tokio::time::timeout(Duration::from_secs(10), wait).await.expect("back at once").unwrap();
        assert_eq!(what, Idle::Until);
        let sent = mqtt.exchange(conn, message("t", Qos::AtLeastOnce)).await;
        assert_eq!(sent.outcome, Outcome::Answered { class: OutcomeClass::Ok, code: None }, "the same session");
        let _far = broker.await.unwrap();
    }

    #[tokio::test]
    async fn qos_0_is_done_when_written_and_an_http_route_is_refused() {
        let (mqtt, listener) = transport(Duration::from_secs(60)).await;
        let broker = tokio::spawn(async move {
            let mut far = Far::accept(&listener).await;
            let _connect = far.next().await;
            far.send(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))).await;
            let Some(Packet::Publish(p)) = far.next().await else { panic!("PUBLISH") };
            assert_eq!((p.qos, p.pkid), (QoS::AtMostOnce, 0));
        });
        let (conn, _) = mqtt.connect(identity()).await.unwrap();
        let sent = mqtt.exchange(Some(conn), message("t", Qos::AtMostOnce)).await;
        assert_eq!(sent.outcome, Outcome::Sent);
        broker.await.unwrap();
        let refused = mqtt.exchange(sent.conn, bytes::Bytes::from_static(b"{}").into()).await;
        assert_eq!(refused.outcome, Outcome::Failed(Failure::Protocol));
    }

    /// The broker's end of one MQTT 5 session.
    struct Far5 {
        stream: TcpStream,
        read: BytesMut,
    }

    impl Far5 {
        async fn accept(listener: &TcpListener) -> Far5 {
            let (stream, _) = listener.accept().await.unwrap();
            Far5 { stream, read: BytesMut::new() }
        }

        async fn next(&mut self) -> Option<v5::Packet> {
            loop {
                match v5::Packet::read(&mut self.read, None) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("the client sent a bad packet: {e}"),
                }
                if self.stream.read_buf(&mut self.read).await.unwrap() == 0 {
                    return None;
                }
            }
        }

        async fn send(&mut self, packet: v5::Packet) {
            let mut out = BytesMut::new();
            packet.write(&mut out, None).unwrap();
            self.stream.write_all(&out).await.unwrap();
        }

        async fn connack(&mut self, code: v5::ConnectReturnCode, properties: Option<v5::ConnAckProperties>) {
            self.send(v5::Packet::ConnAck(v5::ConnAck { session_present: false, code, properties })).await;
        }
    }

    async fn transport5(settings: MqttSettings) -> (Mqtt, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let settings = MqttSettings { version: MqttVersion::V5, ..settings };
        let endpoint = MqttEndpoint::new(listener.local_addr().unwrap(), Duration::from_secs(2), settings, &[]);
        (Mqtt::new(endpoint), listener)
    }

    fn properties(max_packet_size: u32, server_keep_alive: u16) -> v5::ConnAckProperties {
        // The crate has no constructor for them: each field said.
        v5::ConnAckProperties {
            session_expiry_interval: None,
            receive_max: Some(100),
            max_qos: Some(1),
            retain_available: None,
            max_packet_size: Some(max_packet_size),
            assigned_client_identifier: None,
            topic_alias_max: None,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: (server_keep_alive > 0).then_some(server_keep_alive),
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        }
    }

    /// MQTT 5: the CONNECT carries the session expiry; the CONNACK's
    /// Maximum Packet Size keeps a message too large from going (the
    /// broker would end the session for it) and its Server Keep Alive
    /// replaces the device's; a PUBACK's reason code is the message's
    /// outcome, and the session goes on after a refusal.
    #[tokio::test]
    async fn mqtt_5_reads_the_broker_s_limits_and_each_puback_s_reason_code() {
        let settings =
            MqttSettings { session_expiry: Duration::from_secs(3600), in_flight: 500, ..MqttSettings::default() };
        let (mqtt, listener) = transport5(settings).await;
        let broker = tokio::spawn(async move {
            let mut far = Far5::accept(&listener).await;
            let Some(v5::Packet::Connect(c, _, login)) = far.next().await else { panic!("CONNECT first") };
            assert_eq!((c.client_id.as_str(), c.keep_alive), ("d-1", 60));
            assert_eq!(c.properties.and_then(|p| p.session_expiry_interval), Some(3600));
            assert_eq!(login.map(|l| l.username), Some("u".to_string()));
            far.connack(v5::ConnectReturnCode::Success, Some(properties(64, 1))).await;
            let Some(v5::Packet::Publish(p)) = far.next().await else { panic!("PUBLISH") };
            assert_eq!(p.payload.as_ref(), b"{\"x\":1}", "the large message never came");
            let nack = v5::PubAck { pkid: p.pkid, reason: v5::PubAckReason::PayloadFormatInvalid, properties: None };
            far.send(v5::Packet::PubAck(nack)).await;
            let Some(v5::Packet::Publish(p)) = far.next().await else { panic!("PUBLISH") };
            far.send(v5::Packet::PubAck(v5::PubAck::new(p.pkid, None))).await;
            // The broker's keep-alive (1 s), not the device's 60 s.
            let Some(v5::Packet::PingReq(_)) = far.next().await else { panic!("PINGREQ") };
            far.send(v5::Packet::Disconnect(v5::Disconnect::new(v5::DisconnectReasonCode::SessionTakenOver))).await;
        });
        let (conn, _) = mqtt.connect(identity()).await.unwrap();
        assert_eq!(mqtt.window(&conn), 100, "500 configured, bounded by the broker's Receive Maximum");
        let large = Outgoing {
            body: bytes::Bytes::from(vec![b'x'; 100]),
            route: MqttRoute { topic: "t".into(), qos: Qos::AtLeastOnce, retain: false, observed: None }.into(),
        };
        let too_large = mqtt.exchange(Some(conn), large).await;
        assert_eq!(too_large.outcome, Outcome::Failed(Failure::Protocol));
        let first = mqtt.first_errors();
        assert!(first["protocol"].contains("over the most the broker takes (64 bytes"), "{first:?}");
        let refused = mqtt.exchange(too_large.conn, message("t", Qos::AtLeastOnce)).await;
        assert_eq!(refused.outcome, Outcome::Answered { class: OutcomeClass::Rejected, code: Some(Code::Mqtt(0x99)) });
        assert!(mqtt.first_errors()["rejected"].contains("153 (payload format invalid)"));
        let ok = mqtt.exchange(refused.conn, message("t", Qos::AtLeastOnce)).await;
        assert_eq!(ok.outcome, Outcome::Answered { class: OutcomeClass::Ok, code: None });
        let far_future = Instant::now() + Duration::from_secs(30);
        let (_kept, handback) = HandBack::pair();
        let (conn, what) = mqtt.idle(ok.conn.unwrap(), far_future, handback).await;
        assert_eq!(what, Idle::Keepalive);
        let (_kept, handback) = HandBack::pair();
        let (_, what) = mqtt.idle(conn.unwrap(), far_future, handback).await;
        assert_eq!(what, Idle::Closed(Closed::Disconnect(Some(0x8e))), "session taken over");
        broker.await.unwrap();
    }

    /// A broker whose CONNACK says it takes QoS 0 only: a QoS 1 message is
    /// not sent (the broker would end the session), saying what to write;
    /// a QoS 0 one goes.
    #[tokio::test]
    async fn a_qos_the_broker_does_not_take_is_not_sent() {
        let (mqtt, listener) = transport5(MqttSettings::default()).await;
        let broker = tokio::spawn(async move {
            let mut far = Far5::accept(&listener).await;
            let _connect = far.next().await;
            let qos_0 = v5::ConnAckProperties { max_qos: Some(0), ..properties(1 << 20, 0) };
            far.connack(v5::ConnectReturnCode::Success, Some(qos_0)).await;
            let Some(v5::Packet::Publish(p)) = far.next().await else { panic!("PUBLISH") };
            p.qos
        });
        let (conn, _) = mqtt.connect(identity()).await.unwrap();
        let refused = mqtt.exchange(Some(conn), message("t", Qos::AtLeastOnce)).await;
        assert_eq!(refused.outcome, Outcome::Failed(Failure::Protocol));
        assert!(mqtt.first_errors()["protocol"].contains("write [fleets.mqtt] qos = 0"));
        let sent = mqtt.exchange(refused.conn, message("t", Qos::AtMostOnce)).await;
        assert_eq!(sent.outcome, Outcome::Sent);
        assert_eq!(broker.await.unwrap(), rumqttc::v5::mqttbytes::QoS::AtMostOnce, "only the QoS 0 message came");
    }

    #[tokio::test]
    async fn an_mqtt_5_refusal_is_its_reason_code_in_its_class_with_what_it_means() {
        let (mqtt, listener) = transport5(MqttSettings::default()).await;
        tokio::spawn(async move {
            let mut far = Far5::accept(&listener).await;
            let _connect = far.next().await;
            far.connack(v5::ConnectReturnCode::BadUserNamePassword, None).await;
        });
        let refused = mqtt.connect(identity()).await.err().expect("refused");
        assert_eq!(refused, Outcome::Answered { class: OutcomeClass::Auth, code: Some(Code::Mqtt(0x86)) });
        let said = &mqtt.first_errors()["auth"];
        assert!(said.contains("reason code 134 (bad user name or password)") && said.contains("username"), "{said}");
    }

    /// A request/response message (MQTT 5's Response Topic with
    /// Correlation Data): the session subscribes to its response topic
    /// when it opens, and a message is done at its answer, matched by its
    /// correlation data (an answer to another message is not its).
    #[tokio::test]
    async fn a_request_is_timed_to_its_own_answer_on_the_response_topic() {
        let (mqtt, listener) = transport5(MqttSettings::default()).await;
        let broker = tokio::spawn(async move {
            let mut far = Far5::accept(&listener).await;
            let _connect = far.next().await;
            far.connack(v5::ConnectReturnCode::Success, None).await;
            let Some(v5::Packet::Subscribe(s)) = far.next().await else { panic!("SUBSCRIBE") };
            assert_eq!(s.filters[0].path, "answers/d-1");
            let granted = vec![v5::SubscribeReasonCode::Success(rumqttc::v5::mqttbytes::QoS::AtLeastOnce)];
            far.send(v5::Packet::SubAck(v5::SubAck { pkid: s.pkid, return_codes: granted, properties: None })).await;
            let mut answered = 0;
            for _ in 0..2 {
                let Some(v5::Packet::Publish(p)) = far.next().await else { panic!("PUBLISH") };
                let props = p.properties.clone().expect("a request's properties");
                assert_eq!(props.response_topic.as_deref(), Some("answers/d-1"));
                let data = props.correlation_data.expect("correlation data");
                far.send(v5::Packet::PubAck(v5::PubAck::new(p.pkid, None))).await;
                // An answer to something else first: not this message's.
                let stray = v5::PublishProperties {
                    correlation_data: Some(bytes::Bytes::from_static(b"other")),
                    ..v5::PublishProperties::default()
                };
                far.send(v5::Packet::Publish(v5::Publish::new(
                    "answers/d-1",
                    rumqttc::v5::mqttbytes::QoS::AtMostOnce,
                    "{}",
                    Some(stray),
                )))
                .await;
                let own = v5::PublishProperties { correlation_data: Some(data), ..v5::PublishProperties::default() };
                let mut answer =
                    v5::Publish::new("answers/d-1", rumqttc::v5::mqttbytes::QoS::AtLeastOnce, "{}", Some(own));
                answer.pkid = 9;
                far.send(v5::Packet::Publish(answer)).await;
                let Some(v5::Packet::PubAck(ack)) = far.next().await else { panic!("the answer acknowledged") };
                assert_eq!(ack.pkid, 9);
                answered += 1;
            }
            answered
        });
        let id = Identity { response_topic: Some("answers/d-1".into()), ..identity() };
        let (conn, _) = mqtt.connect(id).await.unwrap();
        let first = mqtt.exchange(Some(conn), message("t", Qos::AtLeastOnce)).await;
        assert_eq!(first.outcome, Outcome::Answered { class: OutcomeClass::Ok, code: None });
        // QoS 0 with an answer to wait for is timed to it as well.
        let second = mqtt.exchange(first.conn, message("t", Qos::AtMostOnce)).await;
        assert_eq!(second.outcome, Outcome::Answered { class: OutcomeClass::Ok, code: None });
        assert_eq!(broker.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_refused_subscription_to_the_response_topic_refuses_the_opening() {
        let (mqtt, listener) = transport5(MqttSettings::default()).await;
        tokio::spawn(async move {
            let mut far = Far5::accept(&listener).await;
            let _connect = far.next().await;
            far.connack(v5::ConnectReturnCode::Success, None).await;
            let Some(v5::Packet::Subscribe(s)) = far.next().await else { panic!("SUBSCRIBE") };
            let refused = vec![v5::SubscribeReasonCode::NotAuthorized];
            far.send(v5::Packet::SubAck(v5::SubAck { pkid: s.pkid, return_codes: refused, properties: None })).await;
            far.next().await
        });
        let id = Identity { response_topic: Some("answers/d-1".into()), ..identity() };
        let refused = mqtt.connect(id).await.err().expect("refused");
        assert_eq!(refused, Outcome::Answered { class: OutcomeClass::Auth, code: Some(Code::Mqtt(0x87)) });
        assert!(mqtt.first_errors()["auth"].contains("response topic \"answers/d-1\""));
    }

    fn clone_endpoint(mqtt: &Mqtt) -> MqttEndpoint {
        let e = &mqtt.endpoint;
        MqttEndpoint::new(e.addr, e.timeout, e.settings.clone(), &[])
    }
}
