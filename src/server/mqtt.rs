//! serve's MQTT listener: the reference backend for `mqtt` fleets, MQTT
//! 3.1.1 and MQTT 5 over TCP, on the same sans-I/O codec as fleetstorm's
//! own client (rumqttc's `mqttbytes::v4` and `v5::mqttbytes::v5`,
//! `Packet::read`/`write` on a `BytesMut`).
//!
//! It is a device backend, not a broker: it routes nothing but the
//! answers to MQTT 5 requests (below). Each session is one task, which
//! - waits for CONNECT (within `header_timeout`; anything else first ends
//!   it; a protocol level other than 4 or 5 gets CONNACK 1), refuses an
//!   empty client id, acts out the CONNECT faults (`connect_rate`,
//!   `connack_refuse_rate`), then checks the login under the profile's
//!   rule ([`crate::wire::mqtt::check_login`]) and lets the session in;
//! - takes PUBLISH at QoS 0 and 1, each held to the profile
//!   ([`crate::wire::mqtt::check_publish`]: the device's own topic, a
//!   valid heartbeat of that device) after the message faults (drop,
//!   stall, capacity, latency before the PUBACK), records it in the
//!   registry as SendHeartbeat's are, and acknowledges QoS 1;
//! - answers PINGREQ, SUBSCRIBE (granted at most QoS 1, `$` filters
//!   refused) and UNSUBSCRIBE;
//! - ends at DISCONNECT, at a bad or out-of-place packet, at a packet
//!   above [`MAX_PACKET`], when nothing came for 1.5 times the session's
//!   keep-alive (serve's `idle_timeout` when the keep-alive is 0), when
//!   `drop_sessions` picks it, when a newer session of its client id
//!   opens (as MQTT asks), and at shutdown.
//!
//! # Two versions, one session
//!
//! The CONNECT's protocol level ([`connect_level`], read before any codec)
//! sets the session's [`Version`] for its whole life. The session logic is
//! written once, on version-neutral packets: what a client sends is read
//! into an [`In`], what serve answers is an [`Out`], and `Version::read`
//! and `Version::write` are the one place that knows either codec. Where
//! the versions differ in what can be *said*, the session asks the
//! version: a refusal is a [`Reason`] (MQTT 5's reason code), which
//! 3.1.1 writes as its CONNACK return code (1 to 5) or, having no word
//! for it, as a closed socket.
//!
//! What MQTT 5 adds:
//! - CONNACK reason codes: 0x85 bad client id, 0x86 bad user name or
//!   password, 0x87 not authorised, 0x9F for `connect_rate`, and
//!   `connack_code`'s 3.1.1 codes as their MQTT 5 counterparts (1 0x84,
//!   2 0x85, 3 0x88, 4 0x86, 5 0x87). Let in, the CONNACK says what a
//!   device backend takes: Receive Maximum [`RECEIVE_MAXIMUM`] (AWS IoT's
//!   and ThingsBoard's 100), Maximum Packet Size [`MAX_PACKET`], Maximum
//!   QoS 1, Retain Available (a retained message is taken as any other;
//!   serve keeps none), Topic Alias Maximum 0, no shared subscriptions, a
//!   Session Expiry Interval of 0 when the client asked for more (serve
//!   keeps no session state), and Server Keep Alive only when the
//!   client's keep-alive is 0 (serve then closes idle sessions after its
//!   `idle_timeout`: the Server Keep Alive is two thirds of it).
//! - Negative PUBACKs: a QoS 1 message the profile refuses gets PUBACK
//!   0x90 (not on the device's own topic), 0x99 (not a valid heartbeat)
//!   or 0x87 (another device's heartbeat) and its session goes on, where
//!   3.1.1 closes it. A refused QoS 0 message has no PUBACK to carry the
//!   reason: its session is closed with a DISCONNECT of that reason.
//! - DISCONNECT before each close of an open session: 0x9B for QoS 2,
//!   0x93 for more than [`RECEIVE_MAXIMUM`] unacknowledged QoS 1
//!   messages, 0x95 for a packet above [`MAX_PACKET`], 0x81 for a
//!   malformed packet, 0x82 for one out of place or breaking a rule
//!   (a Response Topic with wildcards: the packet parses, the protocol
//!   forbids it, which MQTT 5 calls a Protocol Error), 0x94 for a Topic
//!   Alias, 0x8D at the keep-alive, 0x8E when taken over, 0x8B for
//!   `drop_sessions` (as a backend node going down says it) and at
//!   shutdown, 0x89 for a message past the capacity queue, 0x97 when
//!   the registry is full. `drop_rate` still closes with no word: it
//!   acts out a lost connection.
//! - Request/Response: a PUBLISH with a Response Topic is answered, once
//!   checked and acknowledged, by a PUBLISH from serve to that topic with
//!   the request's Correlation Data and `{"status":"ok"}`, if one of the
//!   session's subscriptions matches it (serve routes nothing else), at
//!   the subscription's granted QoS (QoS 1 with serve's own packet id,
//!   at most [`RECEIVE_MAXIMUM`] and the client's Receive Maximum
//!   unacknowledged; beyond, or above the client's Maximum Packet Size,
//!   the answer is not sent). A refused message gets no answer.
//! - SUBACK reason codes: granted QoS 0 or 1, 0x8F for a malformed
//!   filter, 0x9E for a shared subscription (`$share/`), 0x87 for the
//!   broker's own (`$`) topics, 0x97 past [`MAX_SUBSCRIPTIONS`].
//!
//! To see a client past the Receive Maximum, an MQTT 5 session reads on
//! while a message waits in serve (stall, capacity queue, latency), at
//! most [`MAX_PACKET`] bytes ahead, and counts the whole QoS 1 PUBLISHes
//! read but not yet acknowledged. A 3.1.1 session reads nothing ahead.
//!
//! A session's packets are answered in order, one at a time (MQTT asks
//! PUBACKs in the order of their PUBLISHes). What a client sends never
//! panics: the codecs bound every length by what was read, and every
//! error ends the session.
//!
//! Everything is counted in [`super::metrics::MqttCounts`] as 3.1.1's
//! are, and, for messages, in the counters, arrivals and served times
//! SendHeartbeat's requests use, so that `/stats` judges an MQTT run as
//! it does an HTTP one. An MQTT 5 refusal at CONNECT counts under its
//! 3.1.1 counterpart's code (0x9F, 0x88 and 0x89 under 3), a message
//! refused with a reason as a rejected one; `acked` counts successful
//! PUBACKs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use rand::RngExt;
use rumqttc::mqttbytes::v4;
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use rumqttc::v5::mqttbytes::{self as mqtt5, v5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::faults::{precise_sleep, wait_out_stall};
use super::http::MAX_BODY;
use super::metrics::Published;
use super::state::{InFlight, Shared};
use crate::wire::mqtt::{Login, MqttWire, Unfit, check_login, check_publish};

/// The largest packet read: a heartbeat body as large as HTTP takes, its
/// topic (at most 64 KiB) and headers.
pub const MAX_PACKET: usize = MAX_BODY + 64 * 1024 + 16;

/// MQTT 5: the unacknowledged QoS 1 messages a client may have in flight
/// to serve (AWS IoT's and ThingsBoard's limit), and serve's own
/// unacknowledged answers at most.
pub const RECEIVE_MAXIMUM: u16 = 100;

/// MQTT 5: the subscriptions a session holds at most (AWS IoT's 50).
pub const MAX_SUBSCRIPTIONS: usize = 50;

/// The body of serve's answer to an MQTT 5 request.
const RESPONSE: &[u8] = br#"{"status":"ok"}"#;

/// How long a refused session is given to read its CONNACK (or an MQTT 5
/// session its DISCONNECT) before the socket closes.
const LINGER: Duration = Duration::from_secs(1);

/// Accepts MQTT connections on `listener` until `stop` is cancelled, each
/// served in its own task; then waits (at most `shutdown_grace`) for the
/// sessions to end by themselves, reading what their clients had sent
/// (the messages a client counted as sent when it closed are counted
/// here too), and ends those still open.
pub(super) async fn run(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    // Each session holds a sender: `recv` ends once all have finished.
    let (running, mut finished) = mpsc::channel::<()>(1);
    let end_sessions = CancellationToken::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let open = shared.metrics.mqtt.connections_open.load(Ordering::Relaxed)
                        + shared.metrics.connections_open.load(Ordering::Relaxed);
                    if open >= shared.config.max_connections {
                        shared.metrics.refused_connections.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let (shared, stop, running) = (shared.clone(), end_sessions.clone(), running.clone());
                    tokio::spawn(async move {
                        serve_session(shared, stream, stop).await;
                        drop(running);
                    });
                }
                // Out of file descriptors, or a connection reset before
                // it was accepted: wait a little and go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            () = stop.cancelled() => break,
        }
    }
    drop(listener);
    drop(running);
    if tokio::time::timeout(shared.config.shutdown_grace, finished.recv()).await.is_err() {
        end_sessions.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), finished.recv()).await;
    }
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client's DISCONNECT, or its end of the stream.
    Disconnected,
    /// No CONNECT within `header_timeout`.
    NoConnect,
    /// CONNACK refused the session with this return code (3.1.1's, or
    /// MQTT 5's reason code).
    Refused(u8),
    /// A packet that could not be read, or one out of place.
    Protocol,
    /// Nothing came for 1.5 times the keep-alive.
    KeepAlive,
    /// A message refused: its session closed.
    Rejected,
    /// Closed on purpose (`drop_rate`, `drop_sessions`).
    Dropped,
    /// A message beyond the capacity queue's limit.
    Shed,
    /// A message of a new device when the registry is full.
    RegistryFull,
    /// A newer session with the same client id ended this one.
    TakenOver,
    /// serve is stopping.
    Stopped,
}

/// The protocol a session speaks, from its CONNECT's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (level 4).
    V311,
    /// MQTT 5 (level 5).
    V5,
}

/// Why serve refuses or ends something: MQTT 5's reason code (3.1.1
/// says some of them as a CONNACK return code, the rest as a close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    UnsupportedProtocolVersion = 0x84,
    ClientIdNotValid = 0x85,
    BadUserNamePassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    ServerShuttingDown = 0x8B,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    QuotaExceeded = 0x97,
    PayloadFormatInvalid = 0x99,
    QoSNotSupported = 0x9B,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
}

impl Reason {
    /// The MQTT 5 counterpart of a 3.1.1 CONNACK return code (1 to 5).
    fn from_v311(code: u8) -> Reason {
        match code {
            1 => Reason::UnsupportedProtocolVersion,
            2 => Reason::ClientIdNotValid,
            4 => Reason::BadUserNamePassword,
            5 => Reason::NotAuthorized,
            _ => Reason::ServerUnavailable,
        }
    }

    /// The 3.1.1 CONNACK return code a refusal for this reason counts
    /// under in `/stats`.
    fn v311(self) -> u8 {
        match self {
            Reason::UnsupportedProtocolVersion => 1,
            Reason::ClientIdNotValid => 2,
            Reason::BadUserNamePassword => 4,
            Reason::NotAuthorized => 5,
            _ => 3,
        }
    }

    fn connack(self) -> v5::ConnectReturnCode {
        use v5::ConnectReturnCode as C;
        match self {
            Reason::UnsupportedProtocolVersion => C::UnsupportedProtocolVersion,
            Reason::ClientIdNotValid => C::ClientIdentifierNotValid,
            Reason::BadUserNamePassword => C::BadUserNamePassword,
            Reason::NotAuthorized => C::NotAuthorized,
            Reason::ServerUnavailable => C::ServerUnavailable,
            Reason::ServerBusy => C::ServerBusy,
            Reason::ConnectionRateExceeded => C::ConnectionRateExceeded,
            Reason::MalformedPacket => C::MalformedPacket,
            Reason::ProtocolError => C::ProtocolError,
            _ => C::UnspecifiedError,
        }
    }

    fn puback(self) -> v5::PubAckReason {
        use v5::PubAckReason as P;
        match self {
            Reason::NotAuthorized => P::NotAuthorized,
            Reason::TopicNameInvalid => P::TopicNameInvalid,
            Reason::QuotaExceeded => P::QuotaExceeded,
            Reason::PayloadFormatInvalid => P::PayloadFormatInvalid,
            _ => P::UnspecifiedError,
        }
    }

    fn suback(self) -> v5::SubscribeReasonCode {
        use v5::SubscribeReasonCode as S;
        match self {
            Reason::NotAuthorized => S::NotAuthorized,
            Reason::TopicFilterInvalid => S::TopicFilterInvalid,
            Reason::QuotaExceeded => S::QuotaExceeded,
            Reason::SharedSubscriptionsNotSupported => S::SharedSubscriptionsNotSupported,
            _ => S::Unspecified,
        }
    }

    fn disconnect(self) -> v5::DisconnectReasonCode {
        v5::DisconnectReasonCode::try_from(self as u8).unwrap_or(v5::DisconnectReasonCode::UnspecifiedError)
    }
}

/// A CONNECT refused: MQTT 5's reason, and 3.1.1's return code (1 to 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    reason: Reason,
    v311: u8,
}

impl Refusal {
    fn both(reason: Reason) -> Refusal {
        Refusal { reason, v311: reason.v311() }
    }
}

/// A CONNECT, whichever its version.
#[derive(Debug, Default)]
struct Hello {
    client_id: String,
    keep_alive: u16,
    username: Option<String>,
    password: Option<String>,
    /// MQTT 5: the client's Receive Maximum (serve's unacknowledged
    /// answers to it at most), Maximum Packet Size, and Session Expiry
    /// Interval.
    receive_maximum: Option<u16>,
    max_packet: Option<u32>,
    session_expiry: u32,
}

/// A PUBLISH, whichever its version.
#[derive(Debug)]
struct Message {
    topic: String,
    qos: QoS,
    pkid: u16,
    payload: Bytes,
    /// MQTT 5: its Response Topic and Correlation Data.
    response_topic: Option<String>,
    correlation: Option<Bytes>,
}

/// A subscription asked for.
#[derive(Debug)]
struct Filter {
    path: String,
    qos: QoS,
    /// MQTT 5: its Subscription Identifier.
    id: Option<usize>,
}

/// What a client sent, whichever the version.
#[derive(Debug)]
enum In {
    Connect(Box<Hello>),
    Publish(Message),
    PubAck(u16),
    PingReq,
    Subscribe(u16, Vec<Filter>),
    Unsubscribe(u16, Vec<String>),
    Disconnect,
    /// Out of place in a session: QoS 2's handshake, a server's packets,
    /// MQTT 5's AUTH.
    Other,
}

/// What serve sends, whichever the version.
enum Out<'a> {
    /// Let in (with the Server Keep Alive and Session Expiry Interval to
    /// give, MQTT 5), or refused.
    ConnAck(Result<Welcome, Refusal>),
    /// A PUBACK: success, or (MQTT 5) its reason.
    PubAck(u16, Option<Reason>),
    PingResp,
    SubAck(u16, &'a [Result<QoS, Reason>]),
    /// An UNSUBACK: for each filter, whether there was such a subscription.
    UnsubAck(u16, &'a [bool]),
    /// MQTT 5: an answer to a request.
    Publish(Answer<'a>),
    /// MQTT 5: why serve closes the session (3.1.1 has no such packet).
    Disconnect(Reason),
}

/// What an MQTT 5 CONNACK that lets a session in adds.
#[derive(Debug, Clone, Copy, Default)]
struct Welcome {
    server_keep_alive: Option<u16>,
    session_expiry: Option<u32>,
}

/// serve's answer to an MQTT 5 request.
struct Answer<'a> {
    topic: &'a str,
    qos: QoS,
    pkid: u16,
    correlation: Option<Bytes>,
    subscription_ids: Vec<usize>,
}

impl Version {
    /// The whole packet at the head of `buf`, its frame checked.
    fn read(self, buf: &mut BytesMut) -> Result<In, Unread> {
        match self {
            Version::V311 => v4::Packet::read(buf, MAX_PACKET).map(from_v4).map_err(|_| Unread::Bad),
            Version::V5 => read_v5(buf),
        }
    }

    /// Encodes `out` into `buf`; nothing for a packet 3.1.1 has no form of.
    fn write(self, out: &Out<'_>, buf: &mut BytesMut) -> Result<(), ()> {
        match self {
            Version::V311 => write_v4(out, buf),
            Version::V5 => write_v5(out, buf),
        }
    }

    /// What a subscription to `filter` is granted, or why not, when the
    /// session holds `held` others.
    fn grant(self, filter: &Filter, held: usize) -> Result<QoS, Reason> {
        let qos = match filter.qos {
            QoS::AtMostOnce => QoS::AtMostOnce,
            QoS::AtLeastOnce | QoS::ExactlyOnce => QoS::AtLeastOnce,
        };
        let path = filter.path.as_str();
        match self {
            Version::V311 if path.is_empty() || path.starts_with('$') => Err(Reason::NotAuthorized),
            Version::V311 => Ok(qos),
            Version::V5 if !mqtt5::valid_filter(path) => Err(Reason::TopicFilterInvalid),
            Version::V5 if path.starts_with("$share/") => Err(Reason::SharedSubscriptionsNotSupported),
            Version::V5 if path.starts_with('$') => Err(Reason::NotAuthorized),
            Version::V5 if held >= MAX_SUBSCRIPTIONS => Err(Reason::QuotaExceeded),
            Version::V5 => Ok(qos),
        }
    }
}

fn from_v4(packet: v4::Packet) -> In {
    match packet {
        v4::Packet::Connect(c) => {
            let (username, password) = c.login.map(|l| (l.username, l.password)).unzip();
            In::Connect(Box::new(Hello {
                client_id: c.client_id,
                keep_alive: c.keep_alive,
                username,
                password,
                ..Hello::default()
            }))
        }
        v4::Packet::Publish(p) => In::Publish(Message {
            topic: p.topic,
            qos: p.qos,
            pkid: p.pkid,
            payload: p.payload,
            response_topic: None,
            correlation: None,
        }),
        v4::Packet::PubAck(ack) => In::PubAck(ack.pkid),
        v4::Packet::PingReq => In::PingReq,
        v4::Packet::Subscribe(s) => In::Subscribe(
            s.pkid,
            s.filters.into_iter().map(|f| Filter { path: f.path, qos: f.qos, id: None }).collect(),
        ),
        v4::Packet::Unsubscribe(u) => In::Unsubscribe(u.pkid, u.topics),
        v4::Packet::Disconnect => In::Disconnect,
        _ => In::Other,
    }
}

fn qos_from_v5(qos: mqtt5::QoS) -> QoS {
    match qos {
        mqtt5::QoS::AtMostOnce => QoS::AtMostOnce,
        mqtt5::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqtt5::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos_to_v5(qos: QoS) -> mqtt5::QoS {
    match qos {
        QoS::AtMostOnce => mqtt5::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqtt5::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqtt5::QoS::ExactlyOnce,
    }
}

fn read_v5(buf: &mut BytesMut) -> Result<In, Unread> {
    // rumqttc's reader wants more than a fixed header of every packet but
    // PINGREQ: a DISCONNECT of reason 0 may be just that.
    if buf.starts_with(&[0xE0, 0x00]) {
        buf.advance(2);
        return Ok(In::Disconnect);
    }
    Ok(match v5::Packet::read(buf, None).map_err(|_| Unread::Bad)? {
        v5::Packet::Connect(c, _will, login) => {
            let (username, password) = login.map(|l| (l.username, l.password)).unzip();
            let properties = c.properties.as_ref();
            In::Connect(Box::new(Hello {
                client_id: c.client_id,
                keep_alive: c.keep_alive,
                username,
                password,
                receive_maximum: properties.and_then(|p| p.receive_maximum),
                max_packet: properties.and_then(|p| p.max_packet_size),
                session_expiry: properties.and_then(|p| p.session_expiry_interval).unwrap_or(0),
            }))
        }
        v5::Packet::Publish(p) => {
            let properties = p.properties.unwrap_or_default();
            if properties.topic_alias.is_some() {
                return Err(Unread::Breaks(Reason::TopicAliasInvalid));
            }
            let topic = String::from_utf8(p.topic.to_vec()).map_err(|_| Unread::Bad)?;
            let wild = |t: &str| t.is_empty() || mqtt5::has_wildcards(t);
            if topic.is_empty() || properties.response_topic.as_deref().is_some_and(wild) {
                return Err(Unread::Breaks(Reason::ProtocolError));
            }
            In::Publish(Message {
                topic,
                qos: qos_from_v5(p.qos),
                pkid: p.pkid,
                payload: p.payload,
                response_topic: properties.response_topic,
                correlation: properties.correlation_data,
            })
        }
        v5::Packet::PubAck(ack) => In::PubAck(ack.pkid),
        v5::Packet::PingReq(_) => In::PingReq,
        v5::Packet::Subscribe(s) => {
            let id = s.properties.and_then(|p| p.id);
            In::Subscribe(
                s.pkid,
                s.filters.into_iter().map(|f| Filter { path: f.path, qos: qos_from_v5(f.qos), id }).collect(),
            )
        }
        v5::Packet::Unsubscribe(u) => In::Unsubscribe(u.pkid, u.filters),
        v5::Packet::Disconnect(_) => In::Disconnect,
        _ => In::Other,
    })
}

fn write_v4(out: &Out<'_>, buf: &mut BytesMut) -> Result<(), ()> {
    use v4::ConnectReturnCode as C;
    let packet = match out {
        Out::ConnAck(Ok(_)) => v4::Packet::ConnAck(v4::ConnAck::new(C::Success, false)),
        Out::ConnAck(Err(refusal)) => v4::Packet::ConnAck(v4::ConnAck::new(return_code(refusal.v311), false)),
        Out::PubAck(pkid, None) => v4::Packet::PubAck(v4::PubAck::new(*pkid)),
        Out::PingResp => v4::Packet::PingResp,
        Out::SubAck(pkid, granted) => {
            let codes = granted
                .iter()
                .map(|g| match g {
                    Ok(qos) => v4::SubscribeReasonCode::Success(*qos),
                    Err(_) => v4::SubscribeReasonCode::Failure,
                })
                .collect();
            v4::Packet::SubAck(v4::SubAck::new(*pkid, codes))
        }
        Out::UnsubAck(pkid, _) => v4::Packet::UnsubAck(v4::UnsubAck::new(*pkid)),
        // No negative PUBACK, no answers, no DISCONNECT from a server.
        Out::PubAck(_, Some(_)) | Out::Publish(_) | Out::Disconnect(_) => return Ok(()),
    };
    packet.write(buf, MAX_PACKET).map(drop).map_err(drop)
}

fn write_v5(out: &Out<'_>, buf: &mut BytesMut) -> Result<(), ()> {
    let packet = match out {
        Out::ConnAck(Ok(welcome)) => v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code: v5::ConnectReturnCode::Success,
            properties: Some(v5::ConnAckProperties {
                session_expiry_interval: welcome.session_expiry,
                receive_max: Some(RECEIVE_MAXIMUM),
                max_qos: Some(1),
                retain_available: Some(1),
                max_packet_size: Some(MAX_PACKET as u32),
                assigned_client_identifier: None,
                topic_alias_max: Some(0),
                reason_string: None,
                user_properties: Vec::new(),
                wildcard_subscription_available: None,
                subscription_identifiers_available: None,
                shared_subscription_available: Some(0),
                server_keep_alive: welcome.server_keep_alive,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            }),
        }),
        Out::ConnAck(Err(refusal)) => v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code: refusal.reason.connack(),
            properties: None,
        }),
        Out::PubAck(pkid, reason) => v5::Packet::PubAck(v5::PubAck {
            pkid: *pkid,
            reason: reason.map_or(v5::PubAckReason::Success, Reason::puback),
            properties: None,
        }),
        Out::PingResp => v5::Packet::PingResp(v5::PingResp),
        Out::SubAck(pkid, granted) => v5::Packet::SubAck(v5::SubAck {
            pkid: *pkid,
            return_codes: granted
                .iter()
                .map(|g| match g {
                    Ok(qos) => v5::SubscribeReasonCode::Success(qos_to_v5(*qos)),
                    Err(reason) => reason.suback(),
                })
                .collect(),
            properties: None,
        }),
        Out::UnsubAck(pkid, found) => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid: *pkid,
            reasons: found
                .iter()
                .map(|&f| if f { v5::UnsubAckReason::Success } else { v5::UnsubAckReason::NoSubscriptionExisted })
                .collect(),
            properties: None,
        }),
        Out::Publish(answer) => {
            let mut publish = v5::Publish::new(
                answer.topic,
                qos_to_v5(answer.qos),
                Bytes::from_static(RESPONSE),
                Some(v5::PublishProperties {
                    payload_format_indicator: Some(1),
                    correlation_data: answer.correlation.clone(),
                    subscription_identifiers: answer.subscription_ids.clone(),
                    content_type: Some("application/json".into()),
                    ..v5::PublishProperties::default()
                }),
            );
            publish.pkid = answer.pkid;
            v5::Packet::Publish(publish)
        }
        // rumqttc 0.25.1 writes a DISCONNECT with a reason code wrong
        // (with no properties a stray byte follows it; with an empty
        // list, the code is lost): written here, with an empty list.
        Out::Disconnect(reason) => {
            buf.extend_from_slice(&[0xE0, 0x02, reason.disconnect() as u8, 0x00]);
            return Ok(());
        }
    };
    packet.write(buf, None).map(drop).map_err(drop)
}

/// Serves one MQTT session on `io` until it ends (module docs); how it
/// ended. Any stream: a TCP connection, or an in-memory pipe in tests.
pub async fn serve_session<S>(shared: Arc<Shared>, io: S, stop: CancellationToken) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let counts = &shared.metrics.mqtt;
    counts.connections_open.fetch_add(1, Ordering::Relaxed);
    counts.connections_total.fetch_add(1, Ordering::Relaxed);
    let _open = Open(&shared);
    let mut session = Session {
        shared: &shared,
        io,
        read: BytesMut::with_capacity(256),
        write: BytesMut::new(),
        version: Version::V311,
        open: false,
        writing: false,
        said_why: false,
        client_max_packet: None,
        routes: Routes::default(),
    };
    let served = tokio::select! {
        end = session.serve() => Some(end),
        () = stop.cancelled() => None,
    };
    let end = match served {
        Some(end) => end,
        None => session.close(Reason::ServerShuttingDown, End::Stopped).await,
    };
    let counter = match end {
        End::NoConnect => Some(&counts.connect_timeouts),
        End::Protocol => Some(&counts.protocol_errors),
        End::KeepAlive => Some(&counts.keepalive_expired),
        End::Dropped => Some(&counts.dropped_sessions),
        End::TakenOver => Some(&counts.taken_over),
        _ => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    if matches!(end, End::Refused(_)) || session.said_why {
        session.linger().await;
    }
    end
}

/// Counts a connection open for as long as it lives.
struct Open<'a>(&'a Shared);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.metrics.mqtt.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One session's stream, buffers and state.
struct Session<'a, S> {
    shared: &'a Shared,
    io: S,
    /// What has been read of the next packet (MQTT 5: and of those after
    /// it, read ahead while a message waits).
    read: BytesMut,
    /// Each packet is encoded here (kept: no allocation per answer).
    write: BytesMut,
    /// Set from the CONNECT (3.1.1 until then).
    version: Version,
    /// CONNACK 0 was sent.
    open: bool,
    /// A write was under way when the session was cancelled: nothing more
    /// is written (a DISCONNECT would land inside a packet).
    writing: bool,
    /// An MQTT 5 DISCONNECT was sent: the client is given time to read it.
    said_why: bool,
    /// MQTT 5: the client's Maximum Packet Size.
    client_max_packet: Option<u32>,
    /// MQTT 5: where the answers to requests go.
    routes: Routes,
}

/// MQTT 5: the subscriptions a session holds, for the answers to its
/// requests (3.1.1 routes nothing and keeps none), and serve's QoS 1
/// answers not yet acknowledged.
#[derive(Debug, Default)]
struct Routes {
    /// At most [`MAX_SUBSCRIPTIONS`].
    subscriptions: Vec<Filter>,
    /// The packet ids of the answers awaiting the client's PUBACK: at most
    /// `most` (the client's Receive Maximum, at most [`RECEIVE_MAXIMUM`]).
    awaiting: Vec<u16>,
    most: usize,
    last_pkid: u16,
}

impl Routes {
    /// The subscriptions held but any to `path`.
    fn others(&self, path: &str) -> usize {
        self.subscriptions.iter().filter(|s| s.path != path).count()
    }

    /// Holds `filter` at `qos`, replacing a subscription to the same filter.
    fn subscribe(&mut self, filter: Filter, qos: QoS) {
        self.subscriptions.retain(|s| s.path != filter.path);
        self.subscriptions.push(Filter { qos, ..filter });
    }

    /// Whether there was a subscription to `path` to end.
    fn unsubscribe(&mut self, path: &str) -> bool {
        let held = self.subscriptions.len();
        self.subscriptions.retain(|s| s.path != path);
        self.subscriptions.len() < held
    }

    /// The QoS of an answer on `topic` (the highest granted of the
    /// subscriptions matching it) and their identifiers; `None` if none
    /// matches.
    fn route(&self, topic: &str) -> Option<(QoS, Vec<usize>)> {
        let mut granted = None;
        let mut ids = Vec::new();
        for s in self.subscriptions.iter().filter(|s| mqtt5::matches(topic, &s.path)) {
            granted = Some(match (granted, s.qos) {
                (Some(QoS::AtLeastOnce), _) | (_, QoS::AtLeastOnce) => QoS::AtLeastOnce,
                _ => QoS::AtMostOnce,
            });
            ids.extend(s.id);
        }
        granted.map(|qos| (qos, ids))
    }

    /// A packet id for a QoS 1 answer, unless `most` await their PUBACK.
    fn pkid(&mut self) -> Option<u16> {
        if self.awaiting.len() >= self.most {
            return None;
        }
        // Fewer than 65,535 ids are taken: a free one comes.
        loop {
            self.last_pkid = self.last_pkid.wrapping_add(1).max(1);
            if !self.awaiting.contains(&self.last_pkid) {
                return Some(self.last_pkid);
            }
        }
    }
}

/// What a read gave instead of a packet.
#[derive(Debug)]
enum Unread {
    /// The stream ended.
    Closed,
    /// Bytes that are no packet of the session's version.
    Bad,
    /// A packet above [`MAX_PACKET`].
    TooLarge,
    /// A first CONNECT of a protocol level other than 4 and 5.
    Level,
    /// MQTT 5: a packet that breaks a rule, and the reason that says so.
    Breaks(Reason),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    /// The next whole packet (cancel-safe: what was read stays buffered).
    async fn next(&mut self) -> Result<In, Unread> {
        loop {
            // The fixed header is the same in both versions.
            match rumqttc::mqttbytes::check(self.read.iter(), MAX_PACKET) {
                Ok(_) => {
                    if !self.open {
                        match connect_level(&self.read) {
                            Some(4) => self.version = Version::V311,
                            Some(5) => self.version = Version::V5,
                            Some(_) => return Err(Unread::Level),
                            // Not a CONNECT: read as 3.1.1, which ends the session.
                            None => {}
                        }
                    }
                    return self.version.read(&mut self.read);
                }
                Err(CodecError::InsufficientBytes(more)) => self.read.reserve(more.min(MAX_PACKET)),
                Err(CodecError::PayloadSizeLimitExceeded(_)) => return Err(Unread::TooLarge),
                Err(_) => return Err(Unread::Bad),
            }
            match self.io.read_buf(&mut self.read).await {
                Ok(0) | Err(_) => return Err(Unread::Closed),
                Ok(_) => {}
            }
        }
    }

    /// Encodes `out` for the session's version: false if there is
    /// nothing to send (no such packet in 3.1.1, or one above the MQTT 5
    /// client's Maximum Packet Size, which MQTT 5 has the server drop).
    fn encode(&mut self, out: &Out<'_>) -> Result<bool, End> {
        self.write.clear();
        self.version.write(out, &mut self.write).map_err(|()| End::Protocol)?;
        let fits = self.client_max_packet.is_none_or(|max| self.write.len() <= max as usize);
        Ok(!self.write.is_empty() && fits)
    }

    /// Writes what [`Session::encode`] encoded.
    async fn flush(&mut self) -> Result<(), End> {
        self.writing = true;
        self.io.write_all(&self.write).await.map_err(|_| End::Disconnected)?;
        self.writing = false;
        Ok(())
    }

    async fn send(&mut self, out: &Out<'_>) -> Result<(), End> {
        if self.encode(out)? { self.flush().await } else { Ok(()) }
    }

    /// Ends the session: an open MQTT 5 session is told `why` in a
    /// DISCONNECT first; 3.1.1 has no word for it.
    async fn close(&mut self, why: Reason, end: End) -> End {
        if self.version == Version::V5 && self.open && !self.writing {
            let said = tokio::time::timeout(LINGER, self.send(&Out::Disconnect(why))).await;
            self.said_why = matches!(said, Ok(Ok(())));
        }
        end
    }

    /// Lets a refused client read its CONNACK (or an MQTT 5 client its
    /// DISCONNECT): no more is written, and what it sends meanwhile is
    /// read and dropped (a socket closed with unread bytes is reset,
    /// which can lose the last packet on the way), for at most
    /// [`LINGER`].
    async fn linger(&mut self) {
        let _ = self.io.shutdown().await;
        let _ = tokio::time::timeout(LINGER, async {
            let mut sink = [0u8; 1024];
            for _ in 0..64 {
                if matches!(self.io.read(&mut sink).await, Ok(0) | Err(_)) {
                    break;
                }
            }
        })
        .await;
    }

    async fn serve(&mut self) -> End {
        let header_timeout = self.shared.config.header_timeout;
        let hello = match tokio::time::timeout(header_timeout, self.next()).await {
            Err(_) => return End::NoConnect,
            Ok(Ok(In::Connect(hello))) => hello,
            Ok(Err(Unread::Level)) => return self.refuse(Refusal::both(Reason::UnsupportedProtocolVersion)).await,
            Ok(Err(Unread::Closed)) => return End::Disconnected,
            Ok(Ok(_) | Err(Unread::Bad | Unread::TooLarge | Unread::Breaks(_))) => return End::Protocol,
        };
        if let Err(refusal) = self.admit(&hello) {
            return self.refuse(refusal).await;
        }
        // MQTT 5 has a keep-alive of 0 mean none; serve closes idle
        // sessions all the same, and says when.
        let (limit, server_keep_alive) = match hello.keep_alive {
            0 if self.version == Version::V5 => {
                let secs = (self.shared.config.idle_timeout.as_secs() * 2 / 3).clamp(1, u64::from(u16::MAX));
                (Duration::from_millis(secs * 1500), Some(secs as u16))
            }
            0 => (self.shared.config.idle_timeout, None),
            secs => (Duration::from_millis(u64::from(secs) * 1500), None),
        };
        let welcome = Welcome { server_keep_alive, session_expiry: (hello.session_expiry > 0).then_some(0) };
        if let Err(end) = self.send(&Out::ConnAck(Ok(welcome))).await {
            return end;
        }
        self.open = true;
        self.client_max_packet = hello.max_packet;
        self.routes.most = usize::from(hello.receive_maximum.unwrap_or(u16::MAX).min(RECEIVE_MAXIMUM));
        self.shared.metrics.mqtt.connack(0);
        let held = self.shared.client_ids.take(&hello.client_id);
        let wires = self.shared.config.profiles.mqtt_wires().into_owned();
        let mut faults = self.shared.faults.subscribe();
        faults.mark_unchanged();
        loop {
            let deadline = Instant::now() + limit;
            let packet = loop {
                tokio::select! {
                    read = tokio::time::timeout_at(deadline, self.next()) => match read {
                        Err(_) => return self.close(Reason::KeepAliveTimeout, End::KeepAlive).await,
                        Ok(Ok(packet)) => break packet,
                        Ok(Err(Unread::Closed)) => return End::Disconnected,
                        Ok(Err(Unread::Bad)) => return self.close(Reason::MalformedPacket, End::Protocol).await,
                        Ok(Err(Unread::TooLarge)) => return self.close(Reason::PacketTooLarge, End::Protocol).await,
                        Ok(Err(Unread::Level)) => return self.close(Reason::ProtocolError, End::Protocol).await,
                        Ok(Err(Unread::Breaks(why))) => return self.close(why, End::Protocol).await,
                    },
                    () = held.taken_over.cancelled() => return self.close(Reason::SessionTakenOver, End::TakenOver).await,
                    changed = faults.changed() => {
                        if changed.is_err() {
                            return self.close(Reason::ServerShuttingDown, End::Stopped).await;
                        }
                        let share = faults.borrow_and_update().faults.drop_sessions;
                        if share > 0.0 && rand::rng().random::<f64>() < share {
                            return self.close(Reason::ServerShuttingDown, End::Dropped).await;
                        }
                    }
                }
            };
            if let Err(end) = self.answer(packet, &hello.client_id, &wires).await {
                return end;
            }
        }
    }

    /// Whether `hello` opens a session, after the CONNECT faults and the
    /// profile's login rule.
    fn admit(&self, hello: &Hello) -> Result<(), Refusal> {
        if hello.client_id.is_empty() {
            return Err(Refusal::both(Reason::ClientIdNotValid));
        }
        let active = self.shared.faults.borrow().clone();
        let faults = &active.faults;
        if active.connects.as_ref().is_some_and(|bucket| !bucket.take(Instant::now())) {
            return Err(Refusal { reason: Reason::ConnectionRateExceeded, v311: faults.connack_code() });
        }
        if faults.connack_refuse_rate > 0.0 && rand::rng().random::<f64>() < faults.connack_refuse_rate {
            let code = faults.connack_code();
            return Err(Refusal { reason: Reason::from_v311(code), v311: code });
        }
        let known = self.shared.config.profiles.known();
        match check_login(known, &hello.client_id, hello.username.as_deref(), hello.password.as_deref()) {
            Login::Accepted => Ok(()),
            Login::BadUserNamePassword => Err(Refusal::both(Reason::BadUserNamePassword)),
            Login::NotAuthorized => Err(Refusal::both(Reason::NotAuthorized)),
        }
    }

    /// Refuses the session; counted under the 3.1.1 code.
    async fn refuse(&mut self, refusal: Refusal) -> End {
        let (counted, said) = match self.version {
            Version::V311 => (refusal.v311, refusal.v311),
            Version::V5 => (refusal.reason.v311(), refusal.reason as u8),
        };
        self.shared.metrics.mqtt.connack(counted);
        match self.send(&Out::ConnAck(Err(refusal))).await {
            Ok(()) => End::Refused(said),
            Err(end) => end,
        }
    }

    /// Answers one packet of an open session; `Err` ends it.
    async fn answer(&mut self, packet: In, client_id: &str, wires: &[Arc<MqttWire>]) -> Result<(), End> {
        let counts = &self.shared.metrics.mqtt;
        match packet {
            In::Publish(message) => self.publish(message, client_id, wires).await,
            In::PingReq => {
                counts.pings.fetch_add(1, Ordering::Relaxed);
                self.send(&Out::PingResp).await
            }
            In::Subscribe(pkid, filters) => {
                counts.subscribes.fetch_add(1, Ordering::Relaxed);
                let mut granted = Vec::with_capacity(filters.len());
                for filter in filters {
                    let grant = self.version.grant(&filter, self.routes.others(&filter.path));
                    granted.push(grant);
                    if let (Ok(qos), Version::V5) = (grant, self.version) {
                        self.routes.subscribe(filter, qos);
                    }
                }
                self.send(&Out::SubAck(pkid, &granted)).await
            }
            In::Unsubscribe(pkid, filters) => {
                let found: Vec<bool> = filters.iter().map(|path| self.routes.unsubscribe(path)).collect();
                self.send(&Out::UnsubAck(pkid, &found)).await
            }
            In::Disconnect => Err(End::Disconnected),
            // The client's PUBACK of an answer (a stray one is harmless).
            In::PubAck(pkid) => {
                self.routes.awaiting.retain(|&p| p != pkid);
                Ok(())
            }
            // A second CONNECT, QoS 2's handshake, or what only a server sends.
            In::Connect(_) | In::Other => Err(self.close(Reason::ProtocolError, End::Protocol).await),
        }
    }

    /// Waits for `wait` (a fault holding a message). An MQTT 5 session
    /// meanwhile reads on (at most [`MAX_PACKET`] bytes ahead) to see the
    /// client send more unacknowledged QoS 1 messages than
    /// [`RECEIVE_MAXIMUM`]: `unacked` is the message waiting's share (1 for
    /// QoS 1).
    async fn waiting<T>(&mut self, unacked: usize, wait: impl Future<Output = T>) -> Result<T, End> {
        if self.version == Version::V311 {
            return Ok(wait.await);
        }
        tokio::pin!(wait);
        let mut more = true;
        loop {
            tokio::select! {
                biased;
                out = &mut wait => return Ok(out),
                read = self.io.read_buf(&mut self.read), if more && self.read.len() < MAX_PACKET => {
                    more = matches!(read, Ok(1..));
                    if unacked + qos1_publishes(&self.read) > usize::from(RECEIVE_MAXIMUM) {
                        return Err(self.close(Reason::ReceiveMaximumExceeded, End::Protocol).await);
                    }
                }
            }
        }
    }

    /// One message: the faults, the profile's check, the registry, the
    /// PUBACK, and (MQTT 5) the answer to a request.
    async fn publish(&mut self, message: Message, client_id: &str, wires: &[Arc<MqttWire>]) -> Result<(), End> {
        let shared = self.shared;
        let (metrics, counts) = (&shared.metrics, &shared.metrics.mqtt);
        let _in_flight = InFlight::start(shared);
        metrics.arrivals.arrived(crate::units::now_ms() / 1000);
        let started = Instant::now();
        match message.qos {
            QoS::AtMostOnce => counts.received_qos0.fetch_add(1, Ordering::Relaxed),
            QoS::AtLeastOnce => counts.received_qos1.fetch_add(1, Ordering::Relaxed),
            QoS::ExactlyOnce => {
                self.rejected("QoS 2: device backends take QoS 0 and 1".into());
                return Err(self.close(Reason::QoSNotSupported, End::Rejected).await);
            }
        };
        let acknowledged = message.qos == QoS::AtLeastOnce;
        let active = shared.faults.borrow().clone();
        let faults = &active.faults;
        if faults.drop_rate > 0.0 && rand::rng().random::<f64>() < faults.drop_rate {
            metrics.dropped_one();
            return Err(End::Dropped);
        }
        let unacked = usize::from(acknowledged);
        if let Some(stall) = faults.stall {
            self.waiting(unacked, wait_out_stall(&shared.faults, stall)).await?;
        }
        if let Some(queue) = &active.capacity {
            match queue.admit(Instant::now()) {
                Some(finish) => self.waiting(unacked, tokio::time::sleep_until(finish)).await?,
                None => {
                    metrics.shed.fetch_add(1, Ordering::Relaxed);
                    return Err(self.close(Reason::ServerBusy, End::Shed).await);
                }
            }
        }
        if acknowledged && let Some(latency) = &faults.latency {
            let delay = latency.sample(&mut rand::rng());
            self.waiting(unacked, precise_sleep(delay)).await?;
        }
        let summary = match check_publish(wires, client_id, &message.topic, &message.payload) {
            Ok(summary) => summary,
            Err(unfit) => {
                self.rejected(format!("{client_id}'s message on {:?}: {unfit}", printable(&message.topic)));
                let why = match unfit {
                    Unfit::Topic => Reason::TopicNameInvalid,
                    Unfit::Body(_) => Reason::PayloadFormatInvalid,
                    Unfit::Device => Reason::NotAuthorized,
                };
                // MQTT 5 says why in the PUBACK and goes on; 3.1.1 can
                // only close, as MQTT 5 does for a message with no PUBACK.
                return match (self.version, acknowledged) {
                    (Version::V5, true) => self.send(&Out::PubAck(message.pkid, Some(why))).await,
                    _ => Err(self.close(why, End::Rejected).await),
                };
            }
        };
        if shared.registry.record(&summary, &message.payload, crate::units::now_ms()).is_err() {
            return Err(self.close(Reason::QuotaExceeded, End::RegistryFull).await);
        }
        metrics.accepted.fetch_add(1, Ordering::Relaxed);
        if acknowledged {
            self.send(&Out::PubAck(message.pkid, None)).await?;
            counts.published(Published::Acked);
        } else {
            counts.published(Published::Taken);
        }
        metrics.heartbeat_took(started.elapsed());
        match message.response_topic {
            Some(topic) => self.respond(&topic, message.correlation).await,
            None => Ok(()),
        }
    }

    /// MQTT 5's Request/Response: answers on `topic` if a subscription of
    /// the session matches it (module docs).
    async fn respond(&mut self, topic: &str, correlation: Option<Bytes>) -> Result<(), End> {
        let Some((qos, subscription_ids)) = self.routes.route(topic) else { return Ok(()) };
        let pkid = match qos {
            QoS::AtMostOnce => 0,
            // The client's window is full: the answer is not sent.
            _ => match self.routes.pkid() {
                Some(pkid) => pkid,
                None => return Ok(()),
            },
        };
        let answer = Answer { topic, qos, pkid, correlation, subscription_ids };
        if !self.encode(&Out::Publish(answer))? {
            return Ok(());
        }
        if pkid != 0 {
            self.routes.awaiting.push(pkid);
        }
        self.flush().await
    }

    /// Counts a refused message, keeping the first refusal's words for
    /// `/stats`.
    fn rejected(&self, why: String) {
        self.shared.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.mqtt.published(Published::Rejected);
        self.shared.metrics.mqtt.first_rejection(why);
    }
}

/// The whole QoS 1 PUBLISHes at the head of `buf`.
fn qos1_publishes(mut buf: &[u8]) -> usize {
    let mut count = 0;
    loop {
        let Some(&first) = buf.first() else { return count };
        let (mut length, mut at) = (0usize, 1);
        loop {
            let Some(&byte) = buf.get(at) else { return count };
            length |= usize::from(byte & 0x7F) << (7 * (at - 1));
            at += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if at > 4 {
                return count;
            }
        }
        let Some(rest) = buf.get(at + length..) else { return count };
        if first >> 4 == 3 && (first >> 1) & 0b11 == 1 {
            count += 1;
        }
        buf = rest;
    }
}

/// A 3.1.1 CONNACK return code from its number (1 to 5; the faults check it).
fn return_code(code: u8) -> v4::ConnectReturnCode {
    use v4::ConnectReturnCode as C;
    match code {
        1 => C::RefusedProtocolVersion,
        2 => C::BadClientId,
        4 => C::BadUserNamePassword,
        5 => C::NotAuthorized,
        _ => C::ServiceUnavailable,
    }
}

/// The protocol level of the CONNECT at the head of `frame` (a whole
/// packet), if it is one: read before either codec, which picks the
/// session's version.
fn connect_level(frame: &[u8]) -> Option<u8> {
    if frame.first()? >> 4 != 1 {
        return None;
    }
    // The remaining length: 1 to 4 bytes, the last without bit 7.
    let header = 1 + frame.iter().skip(1).take(4).position(|b| b & 0x80 == 0)? + 1;
    let rest = frame.get(header..)?;
    let name_len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    rest.get(2 + name_len).copied()
}

/// A client's text for a message: at most 100 characters, controls dropped.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}

#[cfg(test)]
mod tests {
    //! Sessions driven packet by packet over an in-memory pipe (the same
    //! codec as a client), with tokio's paused clock for the timers: what
    //! serve answers, when it closes, and what it counted.
    use super::*;
    use crate::server::{Faults, ServeConfig};
    use rumqttc::mqttbytes::v4::{
        ConnAck, Connect, ConnectReturnCode, Login as Credentials, Packet, PubAck, Publish, SubAck, Subscribe,
        SubscribeFilter, SubscribeReasonCode, UnsubAck, Unsubscribe,
    };
    use tokio::io::DuplexStream;

    /// serve's state with the MQTT listener on, `ids` (a CSV text) as the
    /// mqtt profile's devices, and `faults`.
    fn shared(ids: Option<&str>, faults: Faults) -> Arc<Shared> {
        let mut profiles = crate::wire::serve::ServeProfiles::new(Vec::new());
        profiles.add_mqtt(Arc::new(MqttWire::for_topic("devices/{device}/telemetry").unwrap()));
        if let Some(text) = ids {
            let file = tempfile::NamedTempFile::with_suffix(".csv").unwrap();
            std::fs::write(file.path(), text).unwrap();
            let ids = crate::identities::Identities::load(file.path(), |_| Ok(())).unwrap();
            profiles.add_identities(crate::wire::ProfileName::Mqtt, Arc::new(ids)).unwrap();
        }
        Shared::new(ServeConfig {
            mqtt: Some("127.0.0.1:0".parse().unwrap()),
            profiles: Arc::new(profiles),
            faults,
            header_timeout: Duration::from_secs(10),
            ..ServeConfig::default()
        })
    }

    /// The client's end of a session: raw packets in and out.
    struct Client {
        io: DuplexStream,
        read: BytesMut,
    }

    impl Client {
        async fn send(&mut self, packet: Packet) {
            let mut out = BytesMut::new();
            packet.write(&mut out, MAX_PACKET).unwrap();
            self.raw(&out).await;
        }

        async fn raw(&mut self, bytes: &[u8]) {
            // serve may have closed already: what it answered is still read.
            let _ = self.io.write_all(bytes).await;
        }

        /// The next packet serve sent; `None` once it closed the session.
        async fn next(&mut self) -> Option<Packet> {
            loop {
                match Packet::read(&mut self.read, MAX_PACKET) {
                    Ok(packet) => return Some(packet),
                    Err(CodecError::InsufficientBytes(_)) => {}
                    Err(e) => panic!("serve sent a bad packet: {e}"),
                }
                if self.io.read_buf(&mut self.read).await.unwrap_or(0) == 0 {
                    return None;
                }
            }
        }
    }

    /// A session served in a task: the client's end, and how it ended.
    fn session(shared: &Arc<Shared>) -> (Client, tokio::task::JoinHandle<End>) {
        let (near, far) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(serve_session(shared.clone(), far, CancellationToken::new()));
        (Client { io: near, read: BytesMut::new() }, task)
    }

    fn connect(client_id: &str, login: Option<(&str, &str)>, keep_alive: u16) -> Packet {
        let mut connect = Connect::new(client_id);
        connect.keep_alive = keep_alive;
        connect.login = login.map(|(u, p)| Credentials::new(u, p));
        Packet::Connect(connect)
    }

    /// Opens a session and returns its client once CONNACK 0 came.
    async fn opened(shared: &Arc<Shared>, client_id: &str) -> (Client, tokio::task::JoinHandle<End>) {
        let (mut client, task) = session(shared);
        client.send(connect(client_id, None, 60)).await;
        assert_eq!(client.next().await, Some(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))));
        (client, task)
    }

    fn heartbeat(device: &str) -> bytes::Bytes {
        serde_json::to_vec(&serde_json::json!({
            "AgentVersion": "1.20231.0",
            "DeviceFleetName": "sensors",
            "DeviceName": device,
            "AgentMetrics": [{"Dimension": "agent", "MetricName": "cpu-utilization", "Timestamp": 1764160000.1, "Value": 1.5}],
            "Models": [],
        }))
        .unwrap()
        .into()
    }

    fn publish(topic: &str, qos: QoS, pkid: u16, body: bytes::Bytes) -> Packet {
        let mut publish = Publish::from_bytes(topic, qos, body);
        publish.pkid = pkid;
        Packet::Publish(publish)
    }

    fn stats(shared: &Shared) -> serde_json::Value {
        shared.stats_json()
    }

    #[tokio::test]
    async fn a_connect_is_let_in_or_refused_with_the_code_a_broker_gives() {
        let ids = "name,username,password\nd-1,user-1,secret-1\n";
        let shared = shared(Some(ids), Faults::default());
        let cases = [
            (connect("d-1", Some(("user-1", "secret-1")), 60), ConnectReturnCode::Success),
            (connect("d-1", Some(("user-1", "wrong")), 60), ConnectReturnCode::BadUserNamePassword),
            (connect("d-1", None, 60), ConnectReturnCode::BadUserNamePassword),
            (connect("d-9", Some(("user-1", "secret-1")), 60), ConnectReturnCode::NotAuthorized),
            (connect("", None, 60), ConnectReturnCode::BadClientId),
        ];
        for (packet, code) in cases {
            let (mut client, task) = session(&shared);
            client.send(packet.clone()).await;
            assert_eq!(client.next().await, Some(Packet::ConnAck(ConnAck::new(code, false))), "{packet:?}");
            if code == ConnectReturnCode::Success {
                client.send(Packet::Disconnect).await;
                assert_eq!(task.await.unwrap(), End::Disconnected);
            } else {
                assert_eq!(client.next().await, None, "a refused session is closed");
                drop(client);
                assert_eq!(task.await.unwrap(), End::Refused(code as u8));
            }
        }
        let mqtt = &stats(&shared)["mqtt"];
        assert_eq!(mqtt["sessions"], 1);
        assert_eq!(mqtt["refused"], serde_json::json!({"2": 1, "4": 2, "5": 1}));
        // Without identities, any login is let in.
        let open = super::tests::shared(None, Faults::default());
        let (mut client, _task) = session(&open);
        client.send(connect("anyone", Some(("x", "y")), 60)).await;
        assert_eq!(client.next().await, Some(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))));
    }

    #[tokio::test]
    async fn a_protocol_level_other_than_3_1_1_and_5_is_refused_with_connack_1_and_a_first_packet_not_connect_closes() {
        let shared = shared(None, Faults::default());
        // MQTT 3.1's level, 3.
        let mut level3 = BytesMut::new();
        Packet::Connect(Connect::new("d-1")).write(&mut level3, MAX_PACKET).unwrap();
        level3[8] = 3;
        let (mut client, task) = session(&shared);
        client.raw(&level3).await;
        let refused = ConnAck::new(ConnectReturnCode::RefusedProtocolVersion, false);
        assert_eq!(client.next().await, Some(Packet::ConnAck(refused)));
        drop(client);
        assert_eq!(task.await.unwrap(), End::Refused(1));
        let (mut client, task) = session(&shared);
        client.send(Packet::PingReq).await;
        assert_eq!(client.next().await, None);
        assert_eq!(task.await.unwrap(), End::Protocol);
    }

    #[tokio::test]
    async fn a_valid_qos_1_message_is_acknowledged_and_recorded_and_qos_0_is_taken_silently() {
        let shared = shared(None, Faults::default());
        let (mut client, task) = opened(&shared, "d-1").await;
        client.send(publish("devices/d-1/telemetry", QoS::AtMostOnce, 0, heartbeat("d-1"))).await;
        client.send(publish("devices/d-1/telemetry", QoS::AtLeastOnce, 7, heartbeat("d-1"))).await;
        assert_eq!(client.next().await, Some(Packet::PubAck(PubAck::new(7))), "QoS 0 has no answer");
        client.send(Packet::PingReq).await;
        assert_eq!(client.next().await, Some(Packet::PingResp));
        client.send(Packet::Disconnect).await;
        assert_eq!(task.await.unwrap(), End::Disconnected);
        let s = stats(&shared);
        assert_eq!(s["mqtt"]["first_rejection"], serde_json::Value::Null);
        assert_eq!((s["accepted"].as_u64(), s["rejected"].as_u64()), (Some(2), Some(0)));
        assert_eq!(s["mqtt"]["received"], serde_json::json!({"qos0": 1, "qos1": 1}));
        assert_eq!((s["mqtt"]["acked"].as_u64(), s["mqtt"]["pings"].as_u64()), (Some(1), Some(1)));
        assert_eq!(shared.registry.device("sensors", "d-1").map(|d| d.heartbeats), Some(2));
        assert_eq!(s["served_us"]["count"], 2, "each message's time in serve");
        let arrived: u64 = s["arrivals_per_second"].as_array().unwrap().iter().map(|a| a[1].as_u64().unwrap()).sum();
        assert_eq!(arrived, 2);
    }

    #[tokio::test]
    async fn a_message_off_its_topic_with_a_bad_body_or_another_device_s_closes_its_session_and_is_counted() {
        let shared = shared(None, Faults::default());
        let cases = [
            (publish("devices/d-2/telemetry", QoS::AtLeastOnce, 1, heartbeat("d-1")), "own topic"),
            (publish("devices/d-1/telemetry", QoS::AtLeastOnce, 1, bytes::Bytes::from_static(b"{}")), "valid"),
            (publish("devices/d-1/telemetry", QoS::AtMostOnce, 0, heartbeat("d-2")), "another device"),
            (publish("devices/d-1/telemetry", QoS::ExactlyOnce, 1, heartbeat("d-1")), "QoS 2"),
        ];
        for (i, (packet, says)) in cases.into_iter().enumerate() {
            let (mut client, task) = opened(&shared, "d-1").await;
            client.send(packet).await;
            assert_eq!(client.next().await, None, "{says}: closed, no PUBACK");
            assert_eq!(task.await.unwrap(), End::Rejected);
            let s = stats(&shared);
            assert_eq!(
                (s["rejected"].as_u64(), s["mqtt"]["rejected"].as_u64()),
                (Some(i as u64 + 1), Some(i as u64 + 1))
            );
            if i == 0 {
                let first = s["mqtt"]["first_rejection"].as_str().unwrap().to_string();
                assert!(first.contains("devices/d-2/telemetry") && first.contains("own topic"), "{first}");
            }
        }
        assert_eq!(stats(&shared)["accepted"], 0);
        assert_eq!(shared.registry.devices(), 0);
    }

    #[tokio::test]
    async fn subscribes_are_granted_up_to_qos_1_but_the_broker_s_own_topics_and_unsubscribes_answered() {
        let shared = shared(None, Faults::default());
        let (mut client, _task) = opened(&shared, "d-1").await;
        let filters = [("cmd/d-1/#", QoS::ExactlyOnce), ("$SYS/#", QoS::AtMostOnce), ("x", QoS::AtMostOnce)];
        let mut subscribe = Subscribe::new_many(filters.map(|(p, q)| SubscribeFilter::new(p.into(), q)));
        subscribe.pkid = 3;
        client.send(Packet::Subscribe(subscribe)).await;
        let granted = vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtMostOnce),
        ];
        assert_eq!(client.next().await, Some(Packet::SubAck(SubAck::new(3, granted))));
        client.send(Packet::Unsubscribe(Unsubscribe { pkid: 4, topics: vec!["x".into()] })).await;
        assert_eq!(client.next().await, Some(Packet::UnsubAck(UnsubAck::new(4))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_silent_for_one_and_a_half_keep_alives_is_closed_and_one_without_connect_too() {
        let shared = shared(None, Faults::default());
        let (mut client, task) = session(&shared);
        client.send(connect("d-1", None, 2)).await;
        assert!(matches!(client.next().await, Some(Packet::ConnAck(_))));
        let began = Instant::now();
        client.send(Packet::PingReq).await;
        assert_eq!(client.next().await, Some(Packet::PingResp));
        assert_eq!(client.next().await, None, "closed once silent");
        assert_eq!(task.await.unwrap(), End::KeepAlive);
        assert_eq!(began.elapsed(), Duration::from_secs(3), "1.5 times 2 s after the last packet");
        let (mut client, task) = session(&shared);
        assert_eq!(client.next().await, None);
        assert_eq!(task.await.unwrap(), End::NoConnect);
        assert_eq!(began.elapsed(), Duration::from_secs(13), "the header timeout, 10 s");
        let closed = &stats(&shared)["mqtt"]["closed"];
        assert_eq!((closed["keepalive"].as_u64(), closed["no_connect"].as_u64()), (Some(1), Some(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn connect_faults_refuse_with_their_code_and_drop_sessions_closes_those_open() {
        let refusing = Faults { connack_refuse_rate: 1.0, connack_code: Some(3), ..Faults::default() };
        let shared = shared(None, refusing);
        let (mut client, task) = session(&shared);
        client.send(connect("d-1", None, 60)).await;
        let unavailable = ConnAck::new(ConnectReturnCode::ServiceUnavailable, false);
        assert_eq!(client.next().await, Some(Packet::ConnAck(unavailable)));
        drop(client);
        assert_eq!(task.await.unwrap(), End::Refused(3));
        // A second's worth of CONNECTs at 2 a second, then refused.
        shared.faults.send_replace(Arc::new(crate::server::ActiveFaults::new(Faults {
            connect_rate: Some(2.0),
            ..Faults::default()
        })));
        let mut codes = Vec::new();
        let mut open = Vec::new();
        for i in 0..3 {
            let (mut client, task) = session(&shared);
            client.send(connect(&format!("d-{i}"), None, 60)).await;
            let Some(Packet::ConnAck(ack)) = client.next().await else { panic!("CONNACK") };
            codes.push(ack.code);
            open.push((client, task));
        }
        use ConnectReturnCode::{ServiceUnavailable, Success};
        assert_eq!(codes, [Success, Success, ServiceUnavailable]);
        // Dropping every session open: both accepted ones close.
        shared.faults.send_replace(Arc::new(crate::server::ActiveFaults::new(Faults {
            drop_sessions: 1.0,
            ..Faults::default()
        })));
        for (mut client, task) in open.into_iter().take(2) {
            assert_eq!(client.next().await, None);
            assert_eq!(task.await.unwrap(), End::Dropped);
        }
        assert_eq!(stats(&shared)["mqtt"]["closed"]["dropped"], 2);
    }

    #[tokio::test]
    async fn latency_comes_before_the_puback_and_drop_rate_closes_instead() {
        let slow = Faults { latency: Some("60ms".parse().unwrap()), ..Faults::default() };
        let shared = shared(None, slow);
        let (mut client, _task) = opened(&shared, "d-1").await;
        let sent = std::time::Instant::now();
        client.send(publish("devices/d-1/telemetry", QoS::AtLeastOnce, 1, heartbeat("d-1"))).await;
        assert_eq!(client.next().await, Some(Packet::PubAck(PubAck::new(1))));
        assert!(sent.elapsed() >= Duration::from_millis(60), "{:?}", sent.elapsed());
        shared
            .faults
            .send_replace(Arc::new(crate::server::ActiveFaults::new(Faults { drop_rate: 1.0, ..Faults::default() })));
        client.send(publish("devices/d-1/telemetry", QoS::AtLeastOnce, 2, heartbeat("d-1"))).await;
        assert_eq!(client.next().await, None);
        assert_eq!(stats(&shared)["dropped"], 1);
    }

    #[tokio::test]
    async fn a_second_session_of_a_client_id_ends_the_first() {
        let shared = shared(None, Faults::default());
        let (mut first, older) = opened(&shared, "d-1").await;
        let (mut second, _newer) = opened(&shared, "d-1").await;
        assert_eq!(first.next().await, None);
        assert_eq!(older.await.unwrap(), End::TakenOver);
        assert_eq!(shared.client_ids.len(), 1, "the newer session keeps its hold");
        second.send(Packet::PingReq).await;
        assert_eq!(second.next().await, Some(Packet::PingResp));
        second.send(Packet::Disconnect).await;
        assert_eq!(second.next().await, None);
        assert_eq!(stats(&shared)["mqtt"]["closed"]["taken_over"], 1);
    }

    #[tokio::test]
    async fn a_packet_declared_above_the_bound_ends_its_session_before_it_is_read() {
        let shared = shared(None, Faults::default());
        let (mut client, task) = opened(&shared, "d-1").await;
        // A PUBLISH head announcing MAX_PACKET + 1 bytes, none of them sent.
        let mut head = vec![0x32];
        let mut n = MAX_PACKET + 1;
        while n > 0 {
            let byte = (n % 128) as u8;
            n /= 128;
            head.push(if n > 0 { byte | 0x80 } else { byte });
        }
        client.raw(&head).await;
        assert_eq!(client.next().await, None);
        assert_eq!(task.await.unwrap(), End::Protocol);
        assert_eq!(stats(&shared)["mqtt"]["closed"]["protocol_error"], 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_past_the_capacity_queue_closes_its_session_and_a_stall_holds_the_puback() {
        let full = Faults {
            workers: Some(1),
            service_time: Some(Duration::from_secs(1)),
            queue_limit: Some(0),
            ..Faults::default()
        };
        let shared = shared(None, full);
        let (mut first, _a) = opened(&shared, "d-1").await;
        let (mut second, b) = opened(&shared, "d-2").await;
        first.send(publish("devices/d-1/telemetry", QoS::AtLeastOnce, 1, heartbeat("d-1"))).await;
        // Once the first holds the one worker, the second finds no room.
        for _ in 0..1000 {
            if shared.metrics.in_flight.load(Ordering::Relaxed) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        second.send(publish("devices/d-2/telemetry", QoS::AtLeastOnce, 1, heartbeat("d-2"))).await;
        assert_eq!(second.next().await, None);
        assert_eq!(b.await.unwrap(), End::Shed);
        let began = Instant::now();
        assert_eq!(first.next().await, Some(Packet::PubAck(PubAck::new(1))));
        assert_eq!(began.elapsed(), Duration::from_secs(1), "served in its worker's second");
        assert_eq!(stats(&shared)["shed"], 1);
        shared.faults.send_replace(Arc::new(crate::server::ActiveFaults::new(Faults {
            stall: Some(Duration::from_secs(30)),
            ..Faults::default()
        })));
        let began = Instant::now();
        first.send(publish("devices/d-1/telemetry", QoS::AtLeastOnce, 2, heartbeat("d-1"))).await;
        assert_eq!(first.next().await, Some(Packet::PubAck(PubAck::new(2))));
        assert_eq!(began.elapsed(), Duration::from_secs(30), "held for the stall");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_a_client_sends_panics_serve_every_session_ends() {
        use rand::SeedableRng;
        let shared = shared(None, Faults::default());
        let mut rng = rand::rngs::StdRng::seed_from_u64(33);
        let mut valid = BytesMut::new();
        Packet::Connect(Connect::new("d-1")).write(&mut valid, MAX_PACKET).unwrap();
        for case in 0..400 {
            let mut bytes = if case % 2 == 0 { valid.to_vec() } else { Vec::new() };
            let n = rng.random_range(0..64);
            // Packet-like heads: a random type and flags, a small length.
            bytes.push(rng.random());
            bytes.push(rng.random_range(0..n.max(1) as u8 + 4));
            bytes.extend((0..n).map(|_| rng.random::<u8>()));
            let (mut client, task) = session(&shared);
            client.raw(&bytes).await;
            drop(client);
            let end = task.await.expect("the session's task did not panic");
            assert_ne!(end, End::Stopped, "case {case}");
        }
    }

    /// MQTT 5 sessions, with rumqttc's v5 codec as the client.
    mod mqtt5_sessions {
        use super::super::*;
        use super::{heartbeat, shared, stats};
        use crate::server::Faults;
        use rumqttc::v5::mqttbytes::QoS as Q;
        use rumqttc::v5::mqttbytes::v5::{
            ConnAck, ConnAckProperties, Connect, ConnectProperties, ConnectReturnCode as C, DisconnectReasonCode as D,
            Filter as SubFilter, Login as Credentials, Packet, PingReq, PubAck, PubAckReason as P, Publish,
            PublishProperties, SubAck, Subscribe, SubscribeReasonCode as S, UnsubAckReason, Unsubscribe,
        };
        use tokio::io::DuplexStream;

        struct Client {
            io: DuplexStream,
            read: BytesMut,
        }

        impl Client {
            async fn send(&mut self, packet: Packet) {
                let mut out = BytesMut::new();
                packet.write(&mut out, None).unwrap();
                let _ = self.io.write_all(&out).await;
            }

            /// The next packet serve sent; `None` once it closed.
            async fn next(&mut self) -> Option<Packet> {
                loop {
                    match Packet::read(&mut self.read, None) {
                        Ok(packet) => return Some(packet),
                        Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                        Err(e) => panic!("serve sent a bad packet: {e}"),
                    }
                    if self.io.read_buf(&mut self.read).await.unwrap_or(0) == 0 {
                        return None;
                    }
                }
            }

            /// The reason of the DISCONNECT serve sent before it closed.
            async fn disconnected(&mut self) -> D {
                let Some(Packet::Disconnect(d)) = self.next().await else { panic!("a DISCONNECT") };
                assert_eq!(self.next().await, None, "closed after the DISCONNECT");
                d.reason_code
            }
        }

        fn session(shared: &Arc<Shared>, stop: CancellationToken) -> (Client, tokio::task::JoinHandle<End>) {
            let (near, far) = tokio::io::duplex(1 << 16);
            let task = tokio::spawn(serve_session(shared.clone(), far, stop));
            (Client { io: near, read: BytesMut::new() }, task)
        }

        fn connect(client_id: &str, login: Option<(&str, &str)>, keep_alive: u16) -> Packet {
            let connect = Connect { keep_alive, client_id: client_id.into(), clean_start: true, properties: None };
            Packet::Connect(connect, None, login.map(|(u, p)| Credentials::new(u, p)))
        }

        /// A session let in: its client, its task, its CONNACK.
        async fn opened(shared: &Arc<Shared>, client_id: &str) -> (Client, tokio::task::JoinHandle<End>) {
            let (mut client, task) = session(shared, CancellationToken::new());
            client.send(connect(client_id, None, 60)).await;
            let Some(Packet::ConnAck(ack)) = client.next().await else { panic!("a CONNACK") };
            assert_eq!(ack.code, C::Success);
            (client, task)
        }

        fn publish(topic: &str, qos: Q, pkid: u16, body: Bytes, properties: Option<PublishProperties>) -> Packet {
            let mut publish = Publish::new(topic, qos, body, properties);
            publish.pkid = pkid;
            Packet::Publish(publish)
        }

        fn request(response_topic: &str, correlation: &'static [u8]) -> Option<PublishProperties> {
            Some(PublishProperties {
                response_topic: Some(response_topic.into()),
                correlation_data: Some(Bytes::from_static(correlation)),
                ..PublishProperties::default()
            })
        }

        fn puback(pkid: u16, reason: P) -> Option<Packet> {
            Some(Packet::PubAck(PubAck { pkid, reason, properties: None }))
        }

        const TOPIC: &str = "devices/d-1/telemetry";

        #[tokio::test]
        async fn a_connect_is_let_in_with_what_a_device_backend_takes_and_its_messages_acknowledged() {
            let shared = shared(None, Faults::default());
            let (mut client, task) = session(&shared, CancellationToken::new());
            client.send(connect("d-1", None, 60)).await;
            let expected = ConnAckProperties {
                session_expiry_interval: None,
                receive_max: Some(100),
                max_qos: Some(1),
                retain_available: Some(1),
                max_packet_size: Some(MAX_PACKET as u32),
                assigned_client_identifier: None,
                topic_alias_max: Some(0),
                reason_string: None,
                user_properties: Vec::new(),
                wildcard_subscription_available: None,
                subscription_identifiers_available: None,
                shared_subscription_available: Some(0),
                server_keep_alive: None,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            };
            let welcome = ConnAck { session_present: false, code: C::Success, properties: Some(expected.clone()) };
            assert_eq!(client.next().await, Some(Packet::ConnAck(welcome)));
            client.send(publish(TOPIC, Q::AtMostOnce, 0, heartbeat("d-1"), None)).await;
            client.send(publish(TOPIC, Q::AtLeastOnce, 7, heartbeat("d-1"), None)).await;
            assert_eq!(client.next().await, puback(7, P::Success), "QoS 0 has no answer");
            client.send(Packet::PingReq(PingReq)).await;
            assert_eq!(client.next().await, Some(Packet::PingResp(rumqttc::v5::mqttbytes::v5::PingResp)));
            // A DISCONNECT of reason 0 may be two bytes.
            let _ = client.io.write_all(&[0xE0, 0x00]).await;
            assert_eq!(task.await.unwrap(), End::Disconnected);
            let s = stats(&shared);
            assert_eq!((s["accepted"].as_u64(), s["rejected"].as_u64()), (Some(2), Some(0)));
            assert_eq!(s["mqtt"]["received"], serde_json::json!({"qos0": 1, "qos1": 1}));
            assert_eq!((s["mqtt"]["acked"].as_u64(), s["mqtt"]["sessions"].as_u64()), (Some(1), Some(1)));
            assert_eq!(shared.registry.device("sensors", "d-1").map(|d| d.heartbeats), Some(2));
            // A keep-alive of 0 gets serve's (two thirds of its 75 s idle
            // timeout), a session expiry serve's 0.
            let (mut client, _task) = session(&shared, CancellationToken::new());
            let properties = ConnectProperties { session_expiry_interval: Some(3600), ..ConnectProperties::new() };
            let asked =
                Connect { keep_alive: 0, client_id: "d-2".into(), clean_start: false, properties: Some(properties) };
            client.send(Packet::Connect(asked, None, None)).await;
            let Some(Packet::ConnAck(ack)) = client.next().await else { panic!("a CONNACK") };
            let given = ack.properties.unwrap();
            assert_eq!((given.server_keep_alive, given.session_expiry_interval), (Some(50), Some(0)));
        }

        #[tokio::test(start_paused = true)]
        async fn each_refusal_at_connect_has_its_mqtt_5_reason_code_counted_under_3_1_1_s() {
            let ids = "name,username,password\nd-1,user-1,secret-1\n";
            let shared = shared(Some(ids), Faults::default());
            let cases = [
                (connect("d-1", Some(("user-1", "wrong")), 60), C::BadUserNamePassword, 0x86),
                (connect("d-1", None, 60), C::BadUserNamePassword, 0x86),
                (connect("d-9", Some(("user-1", "secret-1")), 60), C::NotAuthorized, 0x87),
                (connect("", None, 60), C::ClientIdentifierNotValid, 0x85),
            ];
            for (packet, code, number) in cases {
                let (mut client, task) = session(&shared, CancellationToken::new());
                client.send(packet.clone()).await;
                let refused = ConnAck { session_present: false, code, properties: None };
                assert_eq!(client.next().await, Some(Packet::ConnAck(refused)), "{packet:?}");
                assert_eq!(client.next().await, None, "a refused session is closed");
                drop(client);
                assert_eq!(task.await.unwrap(), End::Refused(number));
            }
            assert_eq!(stats(&shared)["mqtt"]["refused"], serde_json::json!({"2": 1, "4": 2, "5": 1}));
            // The faults: connack_code as its MQTT 5 counterpart, and
            // connect_rate's own code.
            let faults = |f: Faults| shared.faults.send_replace(Arc::new(crate::server::ActiveFaults::new(f)));
            let codes = [(3, C::ServerUnavailable), (5, C::NotAuthorized), (1, C::UnsupportedProtocolVersion)];
            for (code, expected) in codes {
                faults(Faults { connack_refuse_rate: 1.0, connack_code: Some(code), ..Faults::default() });
                let (mut client, _task) = session(&shared, CancellationToken::new());
                client.send(connect("d-1", Some(("user-1", "secret-1")), 60)).await;
                let Some(Packet::ConnAck(ack)) = client.next().await else { panic!("a CONNACK") };
                assert_eq!(ack.code, expected, "connack_code {code}");
            }
            faults(Faults { connect_rate: Some(1.0), connack_code: Some(4), ..Faults::default() });
            let mut codes = Vec::new();
            for _ in 0..2 {
                let (mut client, _task) = session(&shared, CancellationToken::new());
                client.send(connect("d-1", Some(("user-1", "secret-1")), 60)).await;
                let Some(Packet::ConnAck(ack)) = client.next().await else { panic!("a CONNACK") };
                codes.push(ack.code);
            }
            assert_eq!(codes, [C::Success, C::ConnectionRateExceeded]);
            let refused = &stats(&shared)["mqtt"]["refused"];
            assert_eq!(refused, &serde_json::json!({"1": 1, "2": 1, "3": 2, "4": 2, "5": 2}), "0x9F counts as 3");
        }

        #[tokio::test]
        async fn a_refused_qos_1_message_gets_a_negative_puback_and_its_session_goes_on() {
            let shared = shared(None, Faults::default());
            let (mut client, task) = opened(&shared, "d-1").await;
            let cases = [
                (publish("devices/d-2/telemetry", Q::AtLeastOnce, 1, heartbeat("d-1"), None), P::TopicNameInvalid),
                (publish(TOPIC, Q::AtLeastOnce, 2, Bytes::from_static(b"{}"), None), P::PayloadFormatInvalid),
                (publish(TOPIC, Q::AtLeastOnce, 3, heartbeat("d-2"), None), P::NotAuthorized),
                (publish(TOPIC, Q::AtLeastOnce, 4, heartbeat("d-1"), None), P::Success),
            ];
            for (i, (packet, reason)) in cases.into_iter().enumerate() {
                client.send(packet).await;
                assert_eq!(client.next().await, puback(i as u16 + 1, reason));
            }
            let s = stats(&shared);
            assert_eq!((s["rejected"].as_u64(), s["mqtt"]["rejected"].as_u64()), (Some(3), Some(3)));
            assert_eq!((s["accepted"].as_u64(), s["mqtt"]["acked"].as_u64()), (Some(1), Some(1)));
            let first = s["mqtt"]["first_rejection"].as_str().unwrap().to_string();
            assert!(first.contains("devices/d-2/telemetry") && first.contains("own topic"), "{first}");
            // A refused QoS 0 message has no PUBACK: a DISCONNECT says why.
            client.send(publish("elsewhere", Q::AtMostOnce, 0, heartbeat("d-1"), None)).await;
            assert_eq!(client.disconnected().await, D::TopicNameInvalid);
            drop(client);
            assert_eq!(task.await.unwrap(), End::Rejected);
            // QoS 2: above the CONNACK's Maximum QoS.
            let (mut client, task) = opened(&shared, "d-1").await;
            client.send(publish(TOPIC, Q::ExactlyOnce, 1, heartbeat("d-1"), None)).await;
            assert_eq!(client.disconnected().await, D::QoSNotSupported);
            drop(client);
            assert_eq!(task.await.unwrap(), End::Rejected);
            assert_eq!(stats(&shared)["mqtt"]["rejected"], 5);
        }

        #[tokio::test]
        async fn a_request_is_answered_on_its_response_topic_only_through_a_matching_subscription() {
            let shared = shared(None, Faults::default());
            let (mut client, task) = opened(&shared, "d-1").await;
            // No subscription: acknowledged, not answered.
            client.send(publish(TOPIC, Q::AtLeastOnce, 1, heartbeat("d-1"), request("replies/d-1", b"r-1"))).await;
            assert_eq!(client.next().await, puback(1, P::Success));
            client.send(Packet::PingReq(PingReq)).await;
            assert!(matches!(client.next().await, Some(Packet::PingResp(_))), "nothing routed before the PINGRESP");
            // Subscribed at QoS 2 (granted 1): answered at QoS 1, with
            // serve's own packet id, after the PUBACK.
            let mut subscribe = Subscribe::new(SubFilter::new("replies/+", Q::ExactlyOnce), None);
            subscribe.pkid = 5;
            client.send(Packet::Subscribe(subscribe)).await;
            let Some(Packet::SubAck(SubAck { pkid: 5, return_codes, .. })) = client.next().await else { panic!() };
            assert_eq!(return_codes, [S::Success(Q::AtLeastOnce)]);
            for (pkid, correlation) in [(2, b"r-2"), (3, b"r-3")] {
                client
                    .send(publish(TOPIC, Q::AtLeastOnce, pkid, heartbeat("d-1"), request("replies/d-1", correlation)))
                    .await;
                assert_eq!(client.next().await, puback(pkid, P::Success));
                let Some(Packet::Publish(answer)) = client.next().await else { panic!("the answer") };
                assert_eq!(
                    (&answer.topic[..], answer.qos, &answer.payload[..]),
                    (&b"replies/d-1"[..], Q::AtLeastOnce, RESPONSE)
                );
                assert_ne!(answer.pkid, 0);
                let properties = answer.properties.unwrap();
                assert_eq!(properties.correlation_data.as_deref(), Some(&correlation[..]));
                client.send(Packet::PubAck(PubAck::new(answer.pkid, None))).await;
            }
            // A refused request: its negative PUBACK, no answer.
            client.send(publish(TOPIC, Q::AtLeastOnce, 4, heartbeat("d-2"), request("replies/d-1", b"r-4"))).await;
            assert_eq!(client.next().await, puback(4, P::NotAuthorized));
            client.send(Packet::PingReq(PingReq)).await;
            assert!(matches!(client.next().await, Some(Packet::PingResp(_))), "no answer to a refused request");
            // A QoS 0 subscription gets its answers at QoS 0, to a QoS 0 request too.
            let mut subscribe = Subscribe::new(SubFilter::new("acks/#", Q::AtMostOnce), None);
            subscribe.pkid = 6;
            client.send(Packet::Subscribe(subscribe)).await;
            assert!(matches!(client.next().await, Some(Packet::SubAck(_))));
            client.send(publish(TOPIC, Q::AtMostOnce, 0, heartbeat("d-1"), request("acks/d-1/9", b"r-5"))).await;
            let Some(Packet::Publish(answer)) = client.next().await else { panic!("the answer") };
            assert_eq!((answer.qos, answer.pkid), (Q::AtMostOnce, 0));
            assert_eq!(answer.properties.unwrap().correlation_data.as_deref(), Some(&b"r-5"[..]));
            // A Response Topic with wildcards breaks MQTT 5's rule: Protocol Error.
            client.send(publish(TOPIC, Q::AtLeastOnce, 7, heartbeat("d-1"), request("replies/#", b"r-6"))).await;
            assert_eq!(client.disconnected().await, D::ProtocolError);
            drop(client);
            assert_eq!(task.await.unwrap(), End::Protocol);
            assert_eq!(stats(&shared)["accepted"], 4);
        }

        #[tokio::test]
        async fn the_client_s_receive_maximum_bounds_serve_s_unacknowledged_answers() {
            let shared = shared(None, Faults::default());
            let (mut client, _task) = session(&shared, CancellationToken::new());
            let properties = ConnectProperties { receive_maximum: Some(1), ..ConnectProperties::new() };
            let asked =
                Connect { keep_alive: 60, client_id: "d-1".into(), clean_start: true, properties: Some(properties) };
            client.send(Packet::Connect(asked, None, None)).await;
            assert!(matches!(client.next().await, Some(Packet::ConnAck(_))));
            let mut subscribe = Subscribe::new(SubFilter::new("replies/#", Q::AtLeastOnce), None);
            subscribe.pkid = 1;
            client.send(Packet::Subscribe(subscribe)).await;
            assert!(matches!(client.next().await, Some(Packet::SubAck(_))));
            let ask = |pkid| publish(TOPIC, Q::AtLeastOnce, pkid, heartbeat("d-1"), request("replies/d-1", b"r"));
            client.send(ask(1)).await;
            assert_eq!(client.next().await, puback(1, P::Success));
            let Some(Packet::Publish(first)) = client.next().await else { panic!("the first answer") };
            // Its PUBACK not yet sent, the window of 1 is full: no answer.
            client.send(ask(2)).await;
            assert_eq!(client.next().await, puback(2, P::Success));
            client.send(Packet::PingReq(PingReq)).await;
            assert!(matches!(client.next().await, Some(Packet::PingResp(_))), "no second answer");
            client.send(Packet::PubAck(PubAck::new(first.pkid, None))).await;
            client.send(ask(3)).await;
            assert_eq!(client.next().await, puback(3, P::Success));
            let Some(Packet::Publish(third)) = client.next().await else { panic!("the third answer") };
            assert_eq!(third.qos, Q::AtLeastOnce);
        }

        #[tokio::test]
        async fn subscribes_get_mqtt_5_reason_codes_and_unsubscribes_say_what_was_there() {
            let shared = shared(None, Faults::default());
            let (mut client, _task) = opened(&shared, "d-1").await;
            let filters = [
                ("cmd/d-1/#", Q::ExactlyOnce),
                ("$SYS/#", Q::AtMostOnce),
                ("$share/g/x", Q::AtMostOnce),
                ("a/#/b", Q::AtMostOnce),
                ("x", Q::AtMostOnce),
            ];
            let mut subscribe = Subscribe::new_many(filters.map(|(p, q)| SubFilter::new(p, q)), None);
            subscribe.pkid = 3;
            client.send(Packet::Subscribe(subscribe)).await;
            let granted = vec![
                S::Success(Q::AtLeastOnce),
                S::NotAuthorized,
                S::SharedSubscriptionsNotSupported,
                S::TopicFilterInvalid,
                S::Success(Q::AtMostOnce),
            ];
            assert_eq!(
                client.next().await,
                Some(Packet::SubAck(SubAck { pkid: 3, return_codes: granted, properties: None }))
            );
            let mut unsubscribe = Unsubscribe::new("x", None);
            unsubscribe.filters.push("y".into());
            unsubscribe.pkid = 4;
            client.send(Packet::Unsubscribe(unsubscribe)).await;
            let Some(Packet::UnsubAck(ack)) = client.next().await else { panic!("an UNSUBACK") };
            assert_eq!(
                (ack.pkid, ack.reasons),
                (4, vec![UnsubAckReason::Success, UnsubAckReason::NoSubscriptionExisted])
            );
            // One held, 49 more let in, the 51st past the quota; the same
            // filter again replaces its subscription.
            let filters = (0..50)
                .map(|i| SubFilter::new(format!("t/{i}"), Q::AtMostOnce))
                .chain([SubFilter::new("t/0", Q::AtLeastOnce)]);
            let mut subscribe = Subscribe::new_many(filters, None);
            subscribe.pkid = 5;
            client.send(Packet::Subscribe(subscribe)).await;
            let Some(Packet::SubAck(ack)) = client.next().await else { panic!("a SUBACK") };
            assert_eq!(ack.return_codes[48], S::Success(Q::AtMostOnce));
            assert_eq!(&ack.return_codes[49..], [S::QuotaExceeded, S::Success(Q::AtLeastOnce)]);
        }

        #[tokio::test(start_paused = true)]
        async fn more_unacknowledged_messages_than_the_receive_maximum_are_disconnected_with_0x93() {
            let held = Faults { stall: Some(Duration::from_secs(30)), ..Faults::default() };
            let shared = shared(None, held);
            let burst = |n: u16| {
                let mut out = BytesMut::new();
                for pkid in 1..=n {
                    publish(TOPIC, Q::AtLeastOnce, pkid, heartbeat("d-1"), None).write(&mut out, None).unwrap();
                }
                out
            };
            // 100 in flight: each acknowledged once the stall ends.
            let (mut client, _task) = opened(&shared, "d-1").await;
            let _ = client.io.write_all(&burst(100)).await;
            for pkid in 1..=100 {
                assert_eq!(client.next().await, puback(pkid, P::Success));
            }
            // 101: the client broke the CONNACK's window.
            let (mut client, task) = opened(&shared, "d-1").await;
            let _ = client.io.write_all(&burst(101)).await;
            assert_eq!(client.disconnected().await, D::ReceiveMaximumExceeded);
            drop(client);
            assert_eq!(task.await.unwrap(), End::Protocol);
        }

        #[tokio::test(start_paused = true)]
        async fn serve_says_why_it_closes_an_open_session() {
            let shared = shared(None, Faults::default());
            // A packet above the bound, announced.
            let (mut client, task) = opened(&shared, "d-1").await;
            let mut head = vec![0x32];
            let mut n = MAX_PACKET + 1;
            while n > 0 {
                let byte = (n % 128) as u8;
                n /= 128;
                head.push(if n > 0 { byte | 0x80 } else { byte });
            }
            let _ = client.io.write_all(&head).await;
            assert_eq!(client.disconnected().await, D::PacketTooLarge);
            drop(client);
            assert_eq!(task.await.unwrap(), End::Protocol);
            // Silence past 1.5 keep-alives.
            let (mut client, task) = session(&shared, CancellationToken::new());
            client.send(connect("d-1", None, 2)).await;
            assert!(matches!(client.next().await, Some(Packet::ConnAck(_))));
            assert_eq!(client.disconnected().await, D::KeepAliveTimeout);
            drop(client);
            assert_eq!(task.await.unwrap(), End::KeepAlive);
            // A newer session of its client id.
            let (mut first, older) = opened(&shared, "d-1").await;
            let (_second, _newer) = opened(&shared, "d-1").await;
            assert_eq!(first.disconnected().await, D::SessionTakenOver);
            drop(first);
            assert_eq!(older.await.unwrap(), End::TakenOver);
            // drop_sessions, and serve stopping.
            let (mut dropped, dropped_task) = opened(&shared, "d-3").await;
            shared.faults.send_replace(Arc::new(crate::server::ActiveFaults::new(Faults {
                drop_sessions: 1.0,
                ..Faults::default()
            })));
            assert_eq!(dropped.disconnected().await, D::ServerShuttingDown);
            drop(dropped);
            assert_eq!(dropped_task.await.unwrap(), End::Dropped);
            let stop = CancellationToken::new();
            let (mut client, task) = session(&shared, stop.clone());
            client.send(connect("d-4", None, 60)).await;
            assert!(matches!(client.next().await, Some(Packet::ConnAck(_))));
            stop.cancel();
            assert_eq!(client.disconnected().await, D::ServerShuttingDown);
            drop(client);
            assert_eq!(task.await.unwrap(), End::Stopped);
            let closed = &stats(&shared)["mqtt"]["closed"];
            assert_eq!(
                closed,
                &serde_json::json!({"protocol_error": 1, "keepalive": 1, "no_connect": 0, "dropped": 2, "taken_over": 1}),
                "drop_sessions dropped d-1's newer session too"
            );
        }

        #[tokio::test(start_paused = true)]
        async fn a_message_past_the_capacity_queue_is_told_server_busy() {
            let full = Faults {
                workers: Some(1),
                service_time: Some(Duration::from_secs(1)),
                queue_limit: Some(0),
                ..Faults::default()
            };
            let shared = shared(None, full);
            let (mut first, _a) = opened(&shared, "d-1").await;
            let (mut second, b) = opened(&shared, "d-2").await;
            first.send(publish(TOPIC, Q::AtLeastOnce, 1, heartbeat("d-1"), None)).await;
            for _ in 0..1000 {
                if shared.metrics.in_flight.load(Ordering::Relaxed) == 1 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            second.send(publish("devices/d-2/telemetry", Q::AtLeastOnce, 1, heartbeat("d-2"), None)).await;
            assert_eq!(second.disconnected().await, D::ServerBusy);
            drop(second);
            assert_eq!(b.await.unwrap(), End::Shed);
            assert_eq!(first.next().await, puback(1, P::Success));
            assert_eq!(stats(&shared)["shed"], 1);
        }

        #[tokio::test]
        async fn latency_comes_before_the_puback_in_mqtt_5_too() {
            let slow = Faults { latency: Some("60ms".parse().unwrap()), ..Faults::default() };
            let shared = shared(None, slow);
            let (mut client, _task) = opened(&shared, "d-1").await;
            let sent = std::time::Instant::now();
            client.send(publish(TOPIC, Q::AtLeastOnce, 1, heartbeat("d-1"), None)).await;
            assert_eq!(client.next().await, puback(1, P::Success));
            assert!(sent.elapsed() >= Duration::from_millis(60), "{:?}", sent.elapsed());
        }
    }
}
