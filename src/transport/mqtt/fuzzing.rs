//! The fuzz target `mqtt_client`'s entry (`fuzz/`, feature `fuzzing`):
//! whatever a broker sends, a session never panics.
//!
//! [`client`] plays a broker that sends the given bytes and then closes,
//! to one session over an in-memory pipe ([`MqttStream::Memory`]): the
//! session's CONNECT is written and its CONNACK read from the bytes; if
//! the CONNACK accepted it, a QoS 1 PUBLISH is sent and timed to its
//! PUBACK, and then the session idles until the bytes run out. That is
//! the client's whole reading path: `next`, `answer`, `publish`, `idle`.
//! [`client5`] does the same in MQTT 5, with a response topic: the
//! subscription's SUBACK and the message's answer are read as well.
//!
//! Each call runs on this thread's current-thread runtime with tokio's
//! clock paused, so that a keep-alive or a timeout costs no wall time: the
//! clock jumps to the next timer whenever everything waits.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::stream::MqttStream;
use super::{Mqtt, MqttEndpoint, MqttSettings, MqttVersion, start};
use crate::stats::Outcome;
use crate::transport::{HandBack, Identity, MqttRoute, Outgoing, Qos, Transport};

/// A session's timeout (CONNACK, PUBACK): on the paused clock, free.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The most a call may take on the paused clock: far past anything a
/// session waits for on bytes that end (a keep-alive is 60 s).
const BOUND: Duration = Duration::from_secs(24 * 3600);

/// What a call found wrong, short of a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// The session was still going at [`BOUND`] on the paused clock
    /// although the broker's bytes had ended.
    Hung,
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
}

/// Plays a broker sending `bytes` (then closing) to one session (module
/// docs): the PUBLISH's outcome if the CONNACK let the session in, `Err`
/// if the session did not end.
pub fn client(bytes: &[u8]) -> Result<Option<Outcome>, Finding> {
    RUNTIME.with(|runtime| runtime.block_on(session(bytes, MqttVersion::V311)))
}

/// [`client`] in MQTT 5, its device's messages asking for answers on a
/// response topic: the session subscribes to it before its PUBLISH, and
/// the PUBLISH waits for its PUBACK and its answer.
pub fn client5(bytes: &[u8]) -> Result<Option<Outcome>, Finding> {
    RUNTIME.with(|runtime| runtime.block_on(session(bytes, MqttVersion::V5)))
}

async fn session(bytes: &[u8], version: MqttVersion) -> Result<Option<Outcome>, Finding> {
    let (near, mut far) = tokio::io::duplex(64 * 1024);
    let broker = async move {
        let _ = far.write_all(bytes).await;
        let _ = far.shutdown().await;
        // What the session writes is read (and dropped) until it closes:
        // a full pipe would hold its writes.
        let mut sink = [0u8; 4096];
        while let Ok(1..) = far.read(&mut sink).await {}
    };
    let device = async move {
        let settings = MqttSettings { version, ..MqttSettings::default() };
        let endpoint = MqttEndpoint::new(SocketAddr::from(([127, 0, 0, 1], 1883)), TIMEOUT, settings, &[]);
        let identity = Identity {
            device: "d-1".into(),
            username: Some("u".into()),
            password: Some("p".into()),
            response_topic: (version == MqttVersion::V5).then(|| "devices/d-1/answers".into()),
            ..Identity::default()
        };
        let Ok(Ok(conn)) = tokio::time::timeout(TIMEOUT, start(&endpoint, MqttStream::Memory(near), identity)).await
        else {
            return None;
        };
        let mqtt = Mqtt::new(endpoint);
        let route =
            MqttRoute { topic: "devices/d-1/telemetry".into(), qos: Qos::AtLeastOnce, retain: false, observed: None };
        let outgoing = Outgoing { body: bytes::Bytes::from_static(b"{\"x\":1}"), route: route.into() };
        let published = mqtt.exchange(Some(conn), outgoing).await;
        let mut conn = published.conn;
        // Each wait ends at a packet read, a keep-alive or the end of the
        // bytes: at most one a byte, and one keep-alive between two.
        for _ in 0..2 * bytes.len() + 4 {
            let Some(open) = conn.take() else { break };
            let (_call, handback) = HandBack::pair();
            let (kept, _) = mqtt.idle(open, Instant::now() + Duration::from_secs(600), handback).await;
            conn = kept;
        }
        Some(published.outcome)
    };
    match tokio::time::timeout(BOUND, async { tokio::join!(broker, device) }).await {
        Ok(((), published)) => Ok(published),
        Err(_) => Err(Finding::Hung),
    }
}

/// `valid` with a few random edits (the unit tests' stand-in for the
/// fuzzer's mutations; serve's entry's tests use it too).
#[cfg(test)]
pub(crate) fn mutated(rng: &mut impl rand::Rng, valid: &[u8]) -> Vec<u8> {
    use rand::RngExt;
    let mut bytes = valid.to_vec();
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..bytes.len().max(1));
        match rng.random_range(0..5) {
            0 if !bytes.is_empty() => bytes[at] = rng.random(),
            1 if !bytes.is_empty() => bytes[at] ^= 1 << rng.random_range(0..8),
            2 => bytes.truncate(at),
            3 => bytes.splice(at..at, (0..rng.random_range(1..8)).map(|_| rng.random::<u8>())).for_each(drop),
            // A packet's length byte (the second of its header) bent.
            _ if bytes.len() > 1 => bytes[1] = bytes[1].wrapping_add(rng.random_range(1..=255)),
            _ => {}
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use rand::{RngExt, SeedableRng};
    use rumqttc::mqttbytes::QoS;
    use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PubAck, Publish};

    fn encoded(packets: &[Packet]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for p in packets {
            p.write(&mut out, super::super::MAX_PACKET).unwrap();
        }
        out.to_vec()
    }

    /// What a broker sends a session: the fuzz corpus's seeds
    /// (`fuzz/seed.sh` writes them with [`seeds_to_the_fuzz_corpus`]).
    pub(crate) fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let accepted = Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false));
        let mut inbound = Publish::new("devices/d-1/commands", QoS::AtLeastOnce, b"{\"reboot\":false}".to_vec());
        inbound.pkid = 7;
        vec![
            ("connack-puback", encoded(&[accepted.clone(), Packet::PubAck(PubAck::new(1))])),
            (
                "connack-ping-publish-puback-disconnect",
                encoded(&[
                    accepted.clone(),
                    Packet::PingResp,
                    Packet::Publish(inbound),
                    Packet::PubAck(PubAck::new(1)),
                    Packet::PubAck(PubAck::new(9)),
                    Packet::Disconnect,
                ]),
            ),
            ("connack-refused", encoded(&[Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized, false))])),
        ]
    }

    /// MQTT 5's seeds: a session whose message asks for an answer.
    pub(crate) fn seeds5() -> Vec<(&'static str, Vec<u8>)> {
        use rumqttc::v5::mqttbytes::QoS as Q5;
        use rumqttc::v5::mqttbytes::v5 as p5;
        let encoded = |packets: Vec<p5::Packet>| {
            let mut out = BytesMut::new();
            for p in packets {
                p.write(&mut out, None).unwrap();
            }
            out.to_vec()
        };
        let accepted = || {
            p5::Packet::ConnAck(p5::ConnAck {
                session_present: false,
                code: p5::ConnectReturnCode::Success,
                properties: None,
            })
        };
        let granted = p5::Packet::SubAck(p5::SubAck {
            pkid: 1,
            return_codes: vec![p5::SubscribeReasonCode::Success(Q5::AtLeastOnce)],
            properties: None,
        });
        let answer = p5::PublishProperties {
            correlation_data: Some(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 1])),
            ..p5::PublishProperties::default()
        };
        vec![
            (
                "v5-connack-suback-puback-answer",
                encoded(vec![
                    accepted(),
                    granted,
                    p5::Packet::PubAck(p5::PubAck::new(2, None)),
                    p5::Packet::Publish(p5::Publish::new("devices/d-1/answers", Q5::AtMostOnce, "{}", Some(answer))),
                ]),
            ),
            (
                "v5-connack-refused",
                encoded(vec![p5::Packet::ConnAck(p5::ConnAck {
                    session_present: false,
                    code: p5::ConnectReturnCode::NotAuthorized,
                    properties: None,
                })]),
            ),
        ]
    }

    /// Writes [`seeds`] to `fuzz/corpus/mqtt_client/` (run by
    /// `fuzz/seed.sh`).
    #[test]
    #[ignore = "writes the fuzz corpus; run by fuzz/seed.sh"]
    fn seeds_to_the_fuzz_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mqtt_client");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds().into_iter().chain(seeds5()) {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    #[test]
    fn a_valid_broker_s_packets_run_the_whole_session_and_end() {
        let acknowledged = Some(Outcome::Answered { class: crate::stats::OutcomeClass::Ok, code: None });
        let [(_, puback), (_, longer), (_, refused)] = &seeds()[..] else { panic!("three seeds") };
        assert_eq!(client(puback), Ok(acknowledged), "timed to its PUBACK");
        assert_eq!(client(longer), Ok(acknowledged), "its PUBACK among other packets");
        assert_eq!(client(refused), Ok(None), "no session");
        assert_eq!(client(&[]), Ok(None));
        let [(_, answered), (_, refused)] = &seeds5()[..] else { panic!("two seeds") };
        assert_eq!(client5(answered), Ok(acknowledged), "timed to its PUBACK and its answer");
        assert_eq!(client5(refused), Ok(None), "no session");
        assert_eq!(client5(&seeds()[0].1), Ok(None), "3.1.1's CONNACK is not MQTT 5's");
    }

    /// What the fuzz target does, on stable: random bytes, and the seeds
    /// mutated (bytes flipped, cut, spliced, lengths bent).
    #[test]
    fn nothing_a_broker_sends_panics_a_session_or_holds_it() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(33);
        let seeds = seeds();
        for case in 0..400 {
            let bytes = if case % 4 == 0 {
                let n = rng.random_range(0..96);
                (0..n).map(|_| rng.random::<u8>()).collect()
            } else {
                mutated(&mut rng, &seeds[case % seeds.len()].1)
            };
            let ended = client(&bytes);
            assert!(ended.is_ok(), "case {case}: {ended:?} on {bytes:02x?}");
            let seeds5 = seeds5();
            let bytes5 = if case % 4 == 0 { bytes } else { mutated(&mut rng, &seeds5[case % seeds5.len()].1) };
            let ended = client5(&bytes5);
            assert!(ended.is_ok(), "case {case} (MQTT 5): {ended:?} on {bytes5:02x?}");
        }
    }
}
