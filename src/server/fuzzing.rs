//! The fuzz target `mqtt_serve`'s entry (`fuzz/`, feature `fuzzing`):
//! whatever a client sends, serve's MQTT session neither panics nor hangs.
//!
//! [`mqtt_session`] plays a client that sends the given bytes and then
//! closes its writing half, to one [`serve_session`] over an in-memory
//! pipe, reading what serve answers until serve closes. serve's state is
//! built once per thread: the default config with the `mqtt` profile on,
//! so that a PUBLISH is held to its checks (the device's topic, a valid
//! heartbeat) and recorded in the registry as a TCP session's would be.
//!
//! The seeds are sessions of both versions serve speaks, MQTT 3.1.1 and
//! MQTT 5 (a request with a Response Topic and a subscription that
//! routes its answer among them), so that the fuzzer reaches both codecs
//! and the MQTT 5 session's own paths.
//!
//! Each call runs on this thread's current-thread runtime with tokio's
//! clock paused: serve's timers (the CONNECT wait, the keep-alive, the
//! linger after a refusal) cost no wall time, and a session still open at
//! [`BOUND`] on that clock is a hang.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::mqtt::{End, serve_session};
use super::{ServeConfig, Shared};
use crate::wire::ProfileName;
use crate::wire::serve::ServeProfiles;

/// Far past every timer a session on ended bytes waits for (serve's
/// `header_timeout` and `idle_timeout` are 75 s; a keep-alive at most
/// 1.5 × 65,535 s, but a client that closed ends its session at once).
pub const BOUND: Duration = Duration::from_secs(24 * 3600);

/// What a call found wrong, short of a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The session was still open at [`BOUND`] on the paused clock.
    Hung,
    /// It ended as only a stopping serve ends one (nothing stops it here).
    Stopped,
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    static SHARED: Arc<Shared> = Shared::new(ServeConfig {
        mqtt: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
        profiles: Arc::new(ServeProfiles::new(vec![ProfileName::Mqtt])),
        ..ServeConfig::default()
    });
}

/// Sends `bytes` to one serve MQTT session (module docs); how it ended.
pub fn mqtt_session(bytes: &[u8]) -> Result<End, Finding> {
    let shared = SHARED.with(Arc::clone);
    RUNTIME.with(|runtime| runtime.block_on(session(shared, bytes)))
}

async fn session(shared: Arc<Shared>, bytes: &[u8]) -> Result<End, Finding> {
    let (mut near, far) = tokio::io::duplex(64 * 1024);
    let served = serve_session(shared, far, CancellationToken::new());
    let client = async move {
        let _ = near.write_all(bytes).await;
        let _ = near.shutdown().await;
        // serve's answers are read (and dropped) until it closes: a full
        // pipe would hold its writes.
        let mut sink = [0u8; 4096];
        while let Ok(1..) = near.read(&mut sink).await {}
    };
    match tokio::time::timeout(BOUND, async { tokio::join!(served, client) }).await {
        Ok((End::Stopped, ())) => Err(Finding::Stopped),
        Ok((end, ())) => Ok(end),
        Err(_) => Err(Finding::Hung),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use rand::{RngExt, SeedableRng};
    use rumqttc::mqttbytes::QoS;
    use rumqttc::mqttbytes::v4::{Connect, Packet, Publish};
    use rumqttc::v5::mqttbytes::{QoS as Q5, v5};

    fn encoded(packets: &[Packet]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for p in packets {
            p.write(&mut out, super::super::mqtt::MAX_PACKET).unwrap();
        }
        out.to_vec()
    }

    fn encoded5(packets: &[v5::Packet]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for p in packets {
            p.write(&mut out, None).unwrap();
        }
        out.to_vec()
    }

    /// What a device sends serve: the fuzz corpus's seeds (`fuzz/seed.sh`
    /// writes them with [`seeds_to_the_fuzz_corpus`]).
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let mut connect = Connect::new("d-1");
        connect.keep_alive = 60;
        let body = serde_json::to_vec(&serde_json::json!({
            "AgentVersion": "1.20231.0",
            "DeviceFleetName": "sensors",
            "DeviceName": "d-1",
            "AgentMetrics": [{"Dimension": "agent", "MetricName": "cpu-utilization", "Timestamp": 1764160000.1, "Value": 1.5}],
            "Models": [],
        }))
        .unwrap();
        let mut publish = Publish::new("devices/d-1/telemetry", QoS::AtLeastOnce, body.clone());
        publish.pkid = 1;
        let qos0 = Publish::new("devices/d-1/telemetry", QoS::AtMostOnce, body.clone());
        let connect5 = v5::Connect { keep_alive: 60, client_id: "d-1".into(), clean_start: true, properties: None };
        let publish5 = |properties| {
            let mut publish = v5::Publish::new("devices/d-1/telemetry", Q5::AtLeastOnce, body.clone(), properties);
            publish.pkid = 1;
            v5::Packet::Publish(publish)
        };
        let request = v5::PublishProperties {
            response_topic: Some("replies/d-1".into()),
            correlation_data: Some(bytes::Bytes::from_static(b"r-1")),
            ..v5::PublishProperties::default()
        };
        let mut subscribe = v5::Subscribe::new(v5::Filter::new("replies/#", Q5::AtLeastOnce), None);
        subscribe.pkid = 2;
        vec![
            ("connect-publish", encoded(&[Packet::Connect(connect.clone()), Packet::Publish(publish.clone())])),
            (
                "connect-publish-ping-qos0-disconnect",
                encoded(&[
                    Packet::Connect(connect),
                    Packet::Publish(publish),
                    Packet::PingReq,
                    Packet::Publish(qos0),
                    Packet::Disconnect,
                ]),
            ),
            ("v5-connect-publish", encoded5(&[v5::Packet::Connect(connect5.clone(), None, None), publish5(None)])),
            (
                "v5-connect-subscribe-request-ping-disconnect",
                encoded5(&[
                    v5::Packet::Connect(connect5, None, None),
                    v5::Packet::Subscribe(subscribe),
                    publish5(Some(request)),
                    v5::Packet::PubAck(v5::PubAck::new(1, None)),
                    v5::Packet::PingReq(v5::PingReq),
                    v5::Packet::Disconnect(v5::Disconnect::new(v5::DisconnectReasonCode::NormalDisconnection)),
                ]),
            ),
        ]
    }

    /// Writes [`seeds`] to `fuzz/corpus/mqtt_serve/` (run by
    /// `fuzz/seed.sh`).
    #[test]
    #[ignore = "writes the fuzz corpus; run by fuzz/seed.sh"]
    fn seeds_to_the_fuzz_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mqtt_serve");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    #[test]
    fn a_device_s_valid_packets_are_served_and_the_session_ends_when_it_closes() {
        for (name, bytes) in seeds() {
            assert_eq!(mqtt_session(&bytes), Ok(End::Disconnected), "{name}");
        }
        assert_eq!(mqtt_session(&[]), Ok(End::Disconnected));
    }

    /// What the fuzz target does, on stable: random bytes, and the seeds
    /// mutated (bytes flipped, cut, spliced, lengths bent).
    #[test]
    fn nothing_a_client_sends_panics_serve_or_holds_its_session() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(33);
        let seeds = seeds();
        for case in 0..400 {
            let bytes = if case % 4 == 0 {
                let n = rng.random_range(0..96);
                (0..n).map(|_| rng.random::<u8>()).collect()
            } else {
                crate::transport::mqtt::fuzzing::mutated(&mut rng, &seeds[case % seeds.len()].1)
            };
            let ended = mqtt_session(&bytes);
            assert!(ended.is_ok(), "case {case}: {ended:?} on {bytes:02x?}");
        }
    }
}
