//! The MQTT versions a session speaks, behind one small set of packets:
//! what a device sends ([`Out`]) and what it reads ([`Inbound`]), encoded
//! and decoded by rumqttc's sans-I/O `mqttbytes` modules, `v4` for MQTT
//! 3.1.1 and `v5` for MQTT 5.
//!
//! The session's logic (opening, publishing, keep-alives, reading what a
//! broker pushes) is written once, against these types; a version is a
//! choice of codec made when the session opens. What 3.1.1 lacks reads as
//! absent (no reason code on a PUBACK, no properties on a CONNACK), and
//! what a device sends in 3.1.1 has no properties to carry: a
//! request/response message is MQTT 5's alone, refused before a run
//! starts on a 3.1.1 target.
//!
//! Reason codes are MQTT's own numbers (3.1.1's CONNACK return codes 1 to
//! 5, MQTT 5's reason codes from 0x80), so that a report says the code a
//! broker's documentation lists.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::QoS as V5QoS;
use rumqttc::v5::mqttbytes::v5;

use super::settings::MqttVersion;
use crate::transport::LastWill;
use crate::transport::route::Qos;

/// A packet a device sends.
#[derive(Debug)]
pub(super) enum Out<'a> {
    Connect(Connect<'a>),
    Publish(Publish),
    PubAck {
        pkid: u16,
    },
    Subscribe {
        pkid: u16,
        filter: &'a str,
        qos: Qos,
    },
    PingReq,
    /// A normal DISCONNECT (the broker discards the Will).
    Disconnect,
}

/// A session's CONNECT, in either version.
#[derive(Debug)]
pub(super) struct Connect<'a> {
    pub client_id: &'a str,
    pub keep_alive: u16,
    pub clean_start: bool,
    /// MQTT 5's Session Expiry Interval, in seconds (0: none).
    pub session_expiry: u32,
    pub login: Option<(&'a str, &'a str)>,
    pub will: Option<&'a LastWill>,
}

/// A device's PUBLISH.
#[derive(Debug)]
pub(super) struct Publish {
    pub topic: String,
    pub qos: Qos,
    pub retain: bool,
    /// 0 at QoS 0.
    pub pkid: u16,
    pub payload: Bytes,
    /// MQTT 5's Response Topic and Correlation Data: the message asks for
    /// an answer there, carrying the data.
    pub request: Option<(String, Bytes)>,
    /// What an observed message carries to its observer (MQTT 5's user
    /// property [`STAMP`]).
    pub stamp: Option<String>,
}

/// The user property an observed message carries its intended time in.
pub(super) const STAMP: &str = "fleetstorm-intended";

/// A broker's CONNACK: its code, and in MQTT 5 the limits it sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ConnAck {
    /// 0: accepted; 3.1.1's return code or MQTT 5's reason code.
    pub code: u8,
    /// How many QoS 1 messages the broker takes unacknowledged.
    pub receive_maximum: Option<u16>,
    /// The largest packet the broker takes.
    pub maximum_packet_size: Option<u32>,
    /// The keep-alive the broker sets in place of the device's.
    pub server_keep_alive: Option<u16>,
    /// The highest QoS the broker takes (absent: 2).
    pub maximum_qos: Option<u8>,
    /// Whether the broker takes retained messages (absent: it does).
    pub retain_available: Option<u8>,
    /// What the broker says of a refusal.
    pub reason: Option<String>,
}

/// A PUBLISH the broker sends the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Delivery {
    pub qos: Qos,
    pub pkid: u16,
    pub topic: Bytes,
    pub payload: Bytes,
    /// MQTT 5's Correlation Data: the answer to the request that carried it.
    pub correlation: Option<Bytes>,
    /// The user property [`STAMP`], if the message carries it.
    pub stamp: Option<String>,
}

/// A packet a device reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Inbound {
    ConnAck(ConnAck),
    /// `reason`: 0 in 3.1.1 (no code); MQTT 5's reason code.
    PubAck {
        pkid: u16,
        reason: u8,
    },
    Publish(Delivery),
    /// MQTT 5's reason code for each filter, 3.1.1's granted QoS or 0x80.
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    PingResp,
    /// The broker ends the session: MQTT 5 says why.
    Disconnect {
        reason: Option<u8>,
    },
    /// A packet a broker sends a device that needs nothing of it (an
    /// UNSUBACK), or one it must not send (a CONNECT): named for a note.
    Other(&'static str),
}

/// Why no packet came out of the bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unread {
    /// Not all of it has come yet.
    Incomplete,
    /// The bytes are not an MQTT packet of the session's version, or one
    /// over `max` bytes.
    Malformed,
}

/// Encodes `packet` into `out` (cleared first) in `version`.
/// Taken by value: a PUBLISH's topic and payload move into the codec's
/// packet, not copied (a message's topic is its own allocation).
pub(super) fn write(version: MqttVersion, packet: Out<'_>, out: &mut BytesMut, max: usize) -> Result<(), ()> {
    out.clear();
    match version {
        MqttVersion::V311 => v4_packet(packet).write(out, max).map(drop).map_err(drop),
        MqttVersion::V5 => v5_packet(packet).write(out, Some(max as u32)).map(drop).map_err(drop),
    }
}

/// Decodes the next whole packet of `buf` in `version` (what it used is
/// taken from `buf`; an incomplete packet is left there).
///
/// Whether a packet is whole is read here, from its fixed header, not
/// from the codec: inside a whole packet, the codec's "insufficient
/// bytes" means a length that lies (malformed), and MQTT 5's DISCONNECT
/// with a reason code and no properties (remaining length 1, which the
/// specification allows) is read here, the codec expecting properties.
pub(super) fn read(version: MqttVersion, buf: &mut BytesMut, max: usize) -> Result<Inbound, Unread> {
    let frame = frame_length(buf)?;
    if frame > max {
        return Err(Unread::Malformed);
    }
    if buf.len() < frame {
        return Err(Unread::Incomplete);
    }
    if version == MqttVersion::V5 && buf[0] == 0xe0 && frame == 3 && buf[1] == 1 {
        let reason = buf[2];
        let _ = buf.split_to(frame);
        return Ok(Inbound::Disconnect { reason: Some(reason) });
    }
    let read = match version {
        MqttVersion::V311 => v4::Packet::read(buf, max).map(from_v4).map_err(drop),
        MqttVersion::V5 => v5::Packet::read(buf, Some(max as u32)).map(from_v5).map_err(drop),
    };
    read.map_err(|()| Unread::Malformed)
}

/// The length of the packet at the head of `buf`, fixed header and all,
/// as its fixed header says (1 byte, then 1 to 4 of remaining length).
fn frame_length(buf: &[u8]) -> Result<usize, Unread> {
    let mut remaining = 0usize;
    for (i, byte) in buf.iter().skip(1).take(4).enumerate() {
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(1 + (i + 1) + remaining);
        }
    }
    if buf.len() >= 5 { Err(Unread::Malformed) } else { Err(Unread::Incomplete) }
}

fn v4_qos(qos: Qos) -> QoS {
    match qos {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
    }
}

fn v5_qos(qos: Qos) -> V5QoS {
    match qos {
        Qos::AtMostOnce => V5QoS::AtMostOnce,
        Qos::AtLeastOnce => V5QoS::AtLeastOnce,
    }
}

fn v4_packet(packet: Out<'_>) -> v4::Packet {
    match packet {
        Out::Connect(c) => v4::Packet::Connect(v4::Connect {
            protocol: rumqttc::mqttbytes::Protocol::V4,
            keep_alive: c.keep_alive,
            client_id: c.client_id.to_owned(),
            clean_session: c.clean_start,
            last_will: c.will.map(|w| v4::LastWill {
                topic: w.topic.clone(),
                message: w.payload.clone(),
                qos: v4_qos(w.qos),
                retain: w.retain,
            }),
            login: c.login.map(|(u, p)| v4::Login::new(u, p)),
        }),
        Out::Publish(p) => {
            let mut publish = v4::Publish::from_bytes(p.topic, v4_qos(p.qos), p.payload);
            publish.retain = p.retain;
            publish.pkid = p.pkid;
            v4::Packet::Publish(publish)
        }
        Out::PubAck { pkid } => v4::Packet::PubAck(v4::PubAck::new(pkid)),
        Out::Subscribe { pkid, filter, qos } => {
            let mut subscribe = v4::Subscribe::new(filter, v4_qos(qos));
            subscribe.pkid = pkid;
            v4::Packet::Subscribe(subscribe)
        }
        Out::PingReq => v4::Packet::PingReq,
        Out::Disconnect => v4::Packet::Disconnect,
    }
}

fn v5_packet(packet: Out<'_>) -> v5::Packet {
    match packet {
        Out::Connect(c) => {
            let properties = (c.session_expiry > 0).then(|| v5::ConnectProperties {
                session_expiry_interval: Some(c.session_expiry),
                ..v5::ConnectProperties::new()
            });
            let connect = v5::Connect {
                keep_alive: c.keep_alive,
                client_id: c.client_id.to_owned(),
                clean_start: c.clean_start,
                properties,
            };
            let will = c.will.map(|w| v5::LastWill {
                topic: Bytes::copy_from_slice(w.topic.as_bytes()),
                message: w.payload.clone(),
                qos: v5_qos(w.qos),
                retain: w.retain,
                properties: None,
            });
            v5::Packet::Connect(connect, will, c.login.map(|(u, p)| v5::Login::new(u, p)))
        }
        Out::Publish(p) => {
            let properties = (p.request.is_some() || p.stamp.is_some()).then(|| {
                let (response_topic, correlation_data) = p.request.map_or((None, None), |(t, d)| (Some(t), Some(d)));
                v5::PublishProperties {
                    response_topic,
                    correlation_data,
                    user_properties: p.stamp.into_iter().map(|s| (STAMP.to_string(), s)).collect(),
                    ..v5::PublishProperties::default()
                }
            });
            let mut publish = v5::Publish {
                qos: v5_qos(p.qos),
                topic: Bytes::from(p.topic.into_bytes()),
                payload: p.payload,
                properties,
                ..v5::Publish::default()
            };
            publish.retain = p.retain;
            publish.pkid = p.pkid;
            v5::Packet::Publish(publish)
        }
        Out::PubAck { pkid } => v5::Packet::PubAck(v5::PubAck::new(pkid, None)),
        Out::Subscribe { pkid, filter, qos } => {
            let mut subscribe = v5::Subscribe::new(v5::Filter::new(filter, v5_qos(qos)), None);
            subscribe.pkid = pkid;
            v5::Packet::Subscribe(subscribe)
        }
        Out::PingReq => v5::Packet::PingReq(v5::PingReq),
        Out::Disconnect => v5::Packet::Disconnect(v5::Disconnect::new(v5::DisconnectReasonCode::NormalDisconnection)),
    }
}

fn from_v4(packet: v4::Packet) -> Inbound {
    match packet {
        v4::Packet::ConnAck(ack) => Inbound::ConnAck(ConnAck { code: ack.code as u8, ..ConnAck::default() }),
        v4::Packet::PubAck(ack) => Inbound::PubAck { pkid: ack.pkid, reason: 0 },
        v4::Packet::Publish(p) => Inbound::Publish(Delivery {
            qos: if p.qos == QoS::AtMostOnce { Qos::AtMostOnce } else { Qos::AtLeastOnce },
            pkid: p.pkid,
            topic: Bytes::from(p.topic.into_bytes()),
            payload: p.payload,
            correlation: None,
            stamp: None,
        }),
        v4::Packet::SubAck(ack) => Inbound::SubAck {
            pkid: ack.pkid,
            codes: ack
                .return_codes
                .iter()
                .map(|c| match c {
                    v4::SubscribeReasonCode::Success(qos) => *qos as u8,
                    v4::SubscribeReasonCode::Failure => 0x80,
                })
                .collect(),
        },
        v4::Packet::PingResp => Inbound::PingResp,
        v4::Packet::Disconnect => Inbound::Disconnect { reason: None },
        other => Inbound::Other(v4_name(&other)),
    }
}

fn v4_name(packet: &v4::Packet) -> &'static str {
    match packet {
        v4::Packet::Connect(_) => "CONNECT",
        v4::Packet::PubRec(_) => "PUBREC",
        v4::Packet::PubRel(_) => "PUBREL",
        v4::Packet::PubComp(_) => "PUBCOMP",
        v4::Packet::Subscribe(_) => "SUBSCRIBE",
        v4::Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        v4::Packet::UnsubAck(_) => "UNSUBACK",
        v4::Packet::PingReq => "PINGREQ",
        _ => "a packet",
    }
}

fn from_v5(packet: v5::Packet) -> Inbound {
    match packet {
        v5::Packet::ConnAck(ack) => {
            let p = ack.properties;
            Inbound::ConnAck(ConnAck {
                code: connack_code(ack.code),
                receive_maximum: p.as_ref().and_then(|p| p.receive_max),
                maximum_packet_size: p.as_ref().and_then(|p| p.max_packet_size),
                server_keep_alive: p.as_ref().and_then(|p| p.server_keep_alive),
                maximum_qos: p.as_ref().and_then(|p| p.max_qos),
                retain_available: p.as_ref().and_then(|p| p.retain_available),
                reason: p.and_then(|p| p.reason_string),
            })
        }
        v5::Packet::PubAck(ack) => Inbound::PubAck { pkid: ack.pkid, reason: puback_code(ack.reason) },
        v5::Packet::Publish(p) => {
            let (correlation, stamp) = match p.properties {
                Some(props) => {
                    let stamp = props.user_properties.into_iter().find(|(k, _)| k == STAMP).map(|(_, v)| v);
                    (props.correlation_data, stamp)
                }
                None => (None, None),
            };
            Inbound::Publish(Delivery {
                qos: if p.qos == V5QoS::AtMostOnce { Qos::AtMostOnce } else { Qos::AtLeastOnce },
                pkid: p.pkid,
                topic: p.topic,
                payload: p.payload,
                correlation,
                stamp,
            })
        }
        v5::Packet::SubAck(ack) => {
            Inbound::SubAck { pkid: ack.pkid, codes: ack.return_codes.iter().map(|c| suback_code(*c)).collect() }
        }
        v5::Packet::PingResp(_) => Inbound::PingResp,
        v5::Packet::Disconnect(d) => Inbound::Disconnect { reason: Some(d.reason_code as u8) },
        v5::Packet::Auth(_) => Inbound::Other("AUTH"),
        v5::Packet::Connect(..) => Inbound::Other("CONNECT"),
        v5::Packet::PubRec(_) => Inbound::Other("PUBREC"),
        v5::Packet::PubRel(_) => Inbound::Other("PUBREL"),
        v5::Packet::PubComp(_) => Inbound::Other("PUBCOMP"),
        v5::Packet::Subscribe(_) => Inbound::Other("SUBSCRIBE"),
        v5::Packet::Unsubscribe(_) => Inbound::Other("UNSUBSCRIBE"),
        v5::Packet::UnsubAck(_) => Inbound::Other("UNSUBACK"),
        v5::Packet::PingReq(_) => Inbound::Other("PINGREQ"),
    }
}

/// MQTT 5's number for a CONNACK reason (the codec keeps its table to
/// itself).
fn connack_code(code: v5::ConnectReturnCode) -> u8 {
    use v5::ConnectReturnCode as C;
    match code {
        C::Success => 0,
        C::UnspecifiedError => 0x80,
        C::MalformedPacket => 0x81,
        C::ProtocolError => 0x82,
        C::ImplementationSpecificError => 0x83,
        C::UnsupportedProtocolVersion | C::RefusedProtocolVersion => 0x84,
        C::ClientIdentifierNotValid | C::BadClientId => 0x85,
        C::BadUserNamePassword => 0x86,
        C::NotAuthorized => 0x87,
        C::ServerUnavailable | C::ServiceUnavailable => 0x88,
        C::ServerBusy => 0x89,
        C::Banned => 0x8a,
        C::BadAuthenticationMethod => 0x8c,
        C::TopicNameInvalid => 0x90,
        C::PacketTooLarge => 0x95,
        C::QuotaExceeded => 0x97,
        C::PayloadFormatInvalid => 0x99,
        C::RetainNotSupported => 0x9a,
        C::QoSNotSupported => 0x9b,
        C::UseAnotherServer => 0x9c,
        C::ServerMoved => 0x9d,
        C::ConnectionRateExceeded => 0x9f,
    }
}

fn puback_code(reason: v5::PubAckReason) -> u8 {
    use v5::PubAckReason as R;
    match reason {
        R::Success => 0,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

fn suback_code(code: v5::SubscribeReasonCode) -> u8 {
    use v5::SubscribeReasonCode as S;
    match code {
        S::Success(qos) => qos as u8,
        S::Failure | S::Unspecified => 0x80,
        S::ImplementationSpecific => 0x83,
        S::NotAuthorized => 0x87,
        S::TopicFilterInvalid => 0x8f,
        S::PkidInUse => 0x91,
        S::QuotaExceeded => 0x97,
        S::SharedSubscriptionsNotSupported => 0x9e,
        S::SubscriptionIdNotSupported => 0xa1,
        S::WildcardSubscriptionsNotSupported => 0xa2,
    }
}

/// What an MQTT reason code means, in the words of the specification
/// (3.1.1's CONNACK return codes by `version`, MQTT 5's reason codes).
pub fn meaning(version: MqttVersion, code: u8) -> &'static str {
    match (version, code) {
        (_, 0) => "success",
        (MqttVersion::V311, 1) => "unacceptable protocol version",
        (MqttVersion::V311, 2) => "identifier rejected",
        (MqttVersion::V311, 3) => "server unavailable",
        (MqttVersion::V311, 4) => "bad user name or password",
        (MqttVersion::V311, 5) => "not authorized",
        (_, 0x10) => "no matching subscribers",
        (_, 0x80) => "unspecified error",
        (_, 0x81) => "malformed packet",
        (_, 0x82) => "protocol error",
        (_, 0x83) => "implementation specific error",
        (_, 0x84) => "unsupported protocol version",
        (_, 0x85) => "client identifier not valid",
        (_, 0x86) => "bad user name or password",
        (_, 0x87) => "not authorized",
        (_, 0x88) => "server unavailable",
        (_, 0x89) => "server busy",
        (_, 0x8a) => "banned",
        (_, 0x8b) => "server shutting down",
        (_, 0x8c) => "bad authentication method",
        (_, 0x8d) => "keep alive timeout",
        (_, 0x8e) => "session taken over",
        (_, 0x8f) => "topic filter invalid",
        (_, 0x90) => "topic name invalid",
        (_, 0x91) => "packet identifier in use",
        (_, 0x93) => "receive maximum exceeded",
        (_, 0x94) => "topic alias invalid",
        (_, 0x95) => "packet too large",
        (_, 0x96) => "message rate too high",
        (_, 0x97) => "quota exceeded",
        (_, 0x98) => "administrative action",
        (_, 0x99) => "payload format invalid",
        (_, 0x9a) => "retain not supported",
        (_, 0x9b) => "QoS not supported",
        (_, 0x9c) => "use another server",
        (_, 0x9d) => "server moved",
        (_, 0x9e) => "shared subscriptions not supported",
        (_, 0x9f) => "connection rate exceeded",
        (_, 0xa0) => "maximum connect time",
        (_, 0xa1) => "subscription identifiers not supported",
        (_, 0xa2) => "wildcard subscriptions not supported",
        _ => "a code MQTT does not define",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each version's packets, written by one side and read by the other
    /// as a broker's would be: the same fields come back.
    #[test]
    fn packets_go_out_and_come_back_in_both_versions() {
        for version in [MqttVersion::V311, MqttVersion::V5] {
            let mut out = BytesMut::new();
            let publish = Publish {
                topic: "devices/d-1/telemetry".into(),
                qos: Qos::AtLeastOnce,
                retain: true,
                pkid: 7,
                payload: Bytes::from_static(b"{}"),
                request: None,
                stamp: None,
            };
            write(version, Out::Publish(publish), &mut out, 1 << 20).unwrap();
            // A broker's PUBLISH to a device has the same shape.
            assert_eq!(
                read(version, &mut out, 1 << 20),
                Ok(Inbound::Publish(Delivery {
                    qos: Qos::AtLeastOnce,
                    pkid: 7,
                    topic: Bytes::from_static(b"devices/d-1/telemetry"),
                    payload: Bytes::from_static(b"{}"),
                    correlation: None,
                    stamp: None,
                }))
            );
            assert!(out.is_empty());
            write(version, Out::PingReq, &mut out, 1 << 20).unwrap();
            let half = out.split_to(1);
            let mut partial = half;
            assert_eq!(read(version, &mut partial, 1 << 20), Err(Unread::Incomplete));
            assert_eq!(read(version, &mut BytesMut::from(&[0xf0u8, 0][..]), 1 << 20), Err(Unread::Malformed));
        }
    }

    #[test]
    fn mqtt_5_carries_the_request_and_the_broker_s_limits() {
        let mut out = BytesMut::new();
        let publish = Publish {
            topic: "t".into(),
            qos: Qos::AtMostOnce,
            retain: false,
            pkid: 0,
            payload: Bytes::new(),
            request: Some(("t/answers".into(), Bytes::from_static(b"\0\0\0\x2a"))),
            stamp: Some("ab/123".into()),
        };
        write(MqttVersion::V5, Out::Publish(publish), &mut out, 1 << 20).unwrap();
        let Ok(v5::Packet::Publish(p)) = v5::Packet::read(&mut out, None) else { panic!("a PUBLISH") };
        let props = p.properties.unwrap();
        assert_eq!(props.response_topic.as_deref(), Some("t/answers"));
        assert_eq!(props.correlation_data.as_deref(), Some(&b"\0\0\0\x2a"[..]));
        assert_eq!(props.user_properties, [(STAMP.to_string(), "ab/123".to_string())]);

        let properties = v5::ConnAckProperties {
            session_expiry_interval: None,
            receive_max: Some(100),
            max_qos: None,
            retain_available: None,
            max_packet_size: Some(4096),
            assigned_client_identifier: None,
            topic_alias_max: None,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        };
        let connack =
            v5::ConnAck { session_present: false, code: v5::ConnectReturnCode::Success, properties: Some(properties) };
        v5::Packet::ConnAck(connack).write(&mut out, None).unwrap();
        let Ok(Inbound::ConnAck(ack)) = read(MqttVersion::V5, &mut out, 1 << 20) else { panic!("a CONNACK") };
        assert_eq!((ack.code, ack.receive_maximum, ack.maximum_packet_size), (0, Some(100), Some(4096)));
        let refused =
            v5::ConnAck { session_present: false, code: v5::ConnectReturnCode::BadUserNamePassword, properties: None };
        v5::Packet::ConnAck(refused).write(&mut out, None).unwrap();
        let Ok(Inbound::ConnAck(ack)) = read(MqttVersion::V5, &mut out, 1 << 20) else { panic!("a CONNACK") };
        assert_eq!((ack.code, meaning(MqttVersion::V5, ack.code)), (0x86, "bad user name or password"));
        let nack = v5::PubAck { pkid: 3, reason: v5::PubAckReason::PayloadFormatInvalid, properties: None };
        v5::Packet::PubAck(nack).write(&mut out, None).unwrap();
        assert_eq!(read(MqttVersion::V5, &mut out, 1 << 20), Ok(Inbound::PubAck { pkid: 3, reason: 0x99 }));
        v5::Packet::Disconnect(v5::Disconnect::new(v5::DisconnectReasonCode::SessionTakenOver))
            .write(&mut out, None)
            .unwrap();
        assert_eq!(read(MqttVersion::V5, &mut out, 1 << 20), Ok(Inbound::Disconnect { reason: Some(0x8e) }));
    }
}
