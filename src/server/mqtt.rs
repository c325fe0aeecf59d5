//! serve's MQTT listener: the reference backend for `mqtt` fleets, MQTT
//! 3.1.1 over TCP, on the same sans-I/O codec as fleetstorm's own client
//! (rumqttc's `mqttbytes::v4`, `Packet::read`/`write` on a `BytesMut`).
//!
//! It is a device backend, not a broker: it routes nothing. Each session
//! is one task, which
//! - waits for CONNECT (within `header_timeout`; anything else first, or
//!   a protocol level other than 4, ends it: CONNACK 1 for a level it does
//!   not speak), refuses an empty client id (CONNACK 2), acts out the
//!   CONNECT faults (`connect_rate`, `connack_refuse_rate`: CONNACK
//!   `connack_code`), then checks the login under the profile's rule
//!   ([`crate::wire::mqtt::check_login`]: CONNACK 4 or 5) and answers
//!   CONNACK 0;
//! - takes PUBLISH at QoS 0 and 1, each held to the profile
//!   ([`crate::wire::mqtt::check_publish`]: the device's own topic, a
//!   valid heartbeat of that device) after the message faults (drop,
//!   stall, capacity, latency before the PUBACK), records it in the
//!   registry as SendHeartbeat's are, and acknowledges QoS 1. A message it
//!   refuses closes its session (MQTT 3.1.1 has no negative PUBACK), as
//!   QoS 2 does (device backends do not take it);
//! - answers PINGREQ, SUBSCRIBE (granted at most QoS 1, `$` filters
//!   refused with 0x80; nothing is ever routed to them) and UNSUBSCRIBE;
//! - ends at DISCONNECT, at a bad or out-of-place packet, at a packet
//!   above [`MAX_PACKET`], when nothing came for 1.5 times the session's
//!   keep-alive (serve's `idle_timeout` when the keep-alive is 0), when
//!   `drop_sessions` picks it, when a newer session of its client id
//!   opens (as MQTT asks), and at shutdown.
//!
//! A session's packets are answered in order, one at a time (MQTT asks
//! PUBACKs in the order of their PUBLISHes). What a client sends never
//! panics: the codec bounds every length by what was read, and every
//! error ends the session.
//!
//! Everything is counted in [`super::metrics::MqttCounts`] and, for
//! messages, in the counters, arrivals and served times SendHeartbeat's
//! requests use, so that `/stats` judges an MQTT run as it does an HTTP
//! one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use rand::RngExt;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::faults::{precise_sleep, wait_out_stall};
use super::http::MAX_BODY;
use super::metrics::Published;
use super::state::{InFlight, Shared};
use crate::wire::mqtt::{Login, MqttWire, check_login, check_publish};

/// The largest packet read: a heartbeat body as large as HTTP takes, its
/// topic (at most 64 KiB) and headers.
pub const MAX_PACKET: usize = MAX_BODY + 64 * 1024 + 16;

/// How long a refused session is given to read its CONNACK before the
/// socket closes.
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
    /// CONNACK refused the session with this return code.
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
    let mut session = Session { shared: &shared, io, read: BytesMut::with_capacity(256), write: BytesMut::new() };
    let end = tokio::select! {
        end = session.serve() => end,
        () = stop.cancelled() => End::Stopped,
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
    if let End::Refused(_) = end {
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

/// One session's stream and buffers.
struct Session<'a, S> {
    shared: &'a Shared,
    io: S,
    /// What has been read of the next packet.
    read: BytesMut,
    /// Each packet is encoded here (kept: no allocation per answer).
    write: BytesMut,
}

/// What a read gave instead of a packet.
enum Unread {
    /// The stream ended.
    Closed,
    /// Bytes that are no MQTT 3.1.1 packet, or one too large.
    Bad,
    /// A CONNECT of a protocol level other than 3.1.1's (4).
    Level,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<'_, S> {
    /// The next whole packet (cancel-safe: what was read stays buffered).
    async fn next(&mut self) -> Result<Packet, Unread> {
        loop {
            match rumqttc::mqttbytes::check(self.read.iter(), MAX_PACKET) {
                Ok(_) if connect_level(&self.read).is_some_and(|level| level != 4) => return Err(Unread::Level),
                Ok(_) => return Packet::read(&mut self.read, MAX_PACKET).map_err(|_| Unread::Bad),
                Err(CodecError::InsufficientBytes(more)) => self.read.reserve(more.min(MAX_PACKET)),
                Err(_) => return Err(Unread::Bad),
            }
            match self.io.read_buf(&mut self.read).await {
                Ok(0) | Err(_) => return Err(Unread::Closed),
                Ok(_) => {}
            }
        }
    }

    async fn send(&mut self, packet: &Packet) -> Result<(), End> {
        self.write.clear();
        packet.write(&mut self.write, MAX_PACKET).map_err(|_| End::Protocol)?;
        self.io.write_all(&self.write).await.map_err(|_| End::Disconnected)
    }

    /// Lets a refused client read its CONNACK: no more is written, and what
    /// it sends meanwhile is read and dropped (a socket closed with unread
    /// bytes is reset, which can lose the CONNACK on the way), for at most
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
        let connect = match tokio::time::timeout(header_timeout, self.next()).await {
            Err(_) => return End::NoConnect,
            Ok(Ok(Packet::Connect(connect))) => connect,
            Ok(Err(Unread::Level)) => return self.refuse(ConnectReturnCode::RefusedProtocolVersion).await,
            Ok(Err(Unread::Closed)) => return End::Disconnected,
            Ok(Ok(_) | Err(Unread::Bad)) => return End::Protocol,
        };
        let code = self.admit(&connect);
        if code != ConnectReturnCode::Success {
            return self.refuse(code).await;
        }
        if let Err(end) = self.send(&Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))).await {
            return end;
        }
        self.shared.metrics.mqtt.connack(0);
        let held = self.shared.client_ids.take(&connect.client_id);
        let limit = match connect.keep_alive {
            0 => self.shared.config.idle_timeout,
            secs => Duration::from_millis(u64::from(secs) * 1500),
        };
        let wires = self.shared.config.profiles.mqtt_wires().into_owned();
        let mut faults = self.shared.faults.subscribe();
        faults.mark_unchanged();
        loop {
            let deadline = Instant::now() + limit;
            let packet = loop {
                tokio::select! {
                    read = tokio::time::timeout_at(deadline, self.next()) => match read {
                        Err(_) => return End::KeepAlive,
                        Ok(Ok(packet)) => break packet,
                        Ok(Err(Unread::Closed)) => return End::Disconnected,
                        Ok(Err(Unread::Bad | Unread::Level)) => return End::Protocol,
                    },
                    () = held.taken_over.cancelled() => return End::TakenOver,
                    changed = faults.changed() => {
                        if changed.is_err() {
                            return End::Stopped;
                        }
                        let share = faults.borrow_and_update().faults.drop_sessions;
                        if share > 0.0 && rand::rng().random::<f64>() < share {
                            return End::Dropped;
                        }
                    }
                }
            };
            if let Err(end) = self.answer(packet, &connect.client_id, &wires).await {
                return end;
            }
        }
    }

    /// Whether `connect` opens a session: the CONNACK return code, after
    /// the CONNECT faults and the profile's login rule.
    fn admit(&self, connect: &Connect) -> ConnectReturnCode {
        if connect.client_id.is_empty() {
            return ConnectReturnCode::BadClientId;
        }
        let active = self.shared.faults.borrow().clone();
        let faults = &active.faults;
        let limited = active.connects.as_ref().is_some_and(|bucket| !bucket.take(Instant::now()));
        let refused = faults.connack_refuse_rate > 0.0 && rand::rng().random::<f64>() < faults.connack_refuse_rate;
        if limited || refused {
            return return_code(faults.connack_code());
        }
        let login = connect.login.as_ref();
        let (username, password) = (login.map(|l| l.username.as_str()), login.map(|l| l.password.as_str()));
        match check_login(self.shared.config.profiles.known(), &connect.client_id, username, password) {
            Login::Accepted => ConnectReturnCode::Success,
            Login::BadUserNamePassword => ConnectReturnCode::BadUserNamePassword,
            Login::NotAuthorized => ConnectReturnCode::NotAuthorized,
        }
    }

    /// Refuses the session with `code`.
    async fn refuse(&mut self, code: ConnectReturnCode) -> End {
        self.shared.metrics.mqtt.connack(code as u8);
        match self.send(&Packet::ConnAck(ConnAck::new(code, false))).await {
            Ok(()) => End::Refused(code as u8),
            Err(end) => end,
        }
    }

    /// Answers one packet of an open session; `Err` ends it.
    async fn answer(&mut self, packet: Packet, client_id: &str, wires: &[Arc<MqttWire>]) -> Result<(), End> {
        let counts = &self.shared.metrics.mqtt;
        match packet {
            Packet::Publish(publish) => self.publish(publish, client_id, wires).await,
            Packet::PingReq => {
                counts.pings.fetch_add(1, Ordering::Relaxed);
                self.send(&Packet::PingResp).await
            }
            Packet::Subscribe(subscribe) => {
                counts.subscribes.fetch_add(1, Ordering::Relaxed);
                let granted = subscribe
                    .filters
                    .iter()
                    .map(|f| match f.qos {
                        _ if f.path.is_empty() || f.path.starts_with('$') => SubscribeReasonCode::Failure,
                        QoS::AtMostOnce => SubscribeReasonCode::Success(QoS::AtMostOnce),
                        QoS::AtLeastOnce | QoS::ExactlyOnce => SubscribeReasonCode::Success(QoS::AtLeastOnce),
                    })
                    .collect();
                self.send(&Packet::SubAck(SubAck::new(subscribe.pkid, granted))).await
            }
            Packet::Unsubscribe(unsubscribe) => self.send(&Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid))).await,
            Packet::Disconnect => Err(End::Disconnected),
            // serve publishes nothing a client could acknowledge; a stray
            // PUBACK is harmless.
            Packet::PubAck(_) => Ok(()),
            // A second CONNECT, QoS 2's handshake, or what only a server sends.
            _ => Err(End::Protocol),
        }
    }

    /// One message: the faults, the profile's check, the registry, the
    /// PUBACK.
    async fn publish(
        &mut self,
        publish: rumqttc::mqttbytes::v4::Publish,
        client_id: &str,
        wires: &[Arc<MqttWire>],
    ) -> Result<(), End> {
        let shared = self.shared;
        let (metrics, counts) = (&shared.metrics, &shared.metrics.mqtt);
        let _in_flight = InFlight::start(shared);
        metrics.arrivals.arrived(crate::units::now_ms() / 1000);
        let started = Instant::now();
        match publish.qos {
            QoS::AtMostOnce => counts.received_qos0.fetch_add(1, Ordering::Relaxed),
            QoS::AtLeastOnce => counts.received_qos1.fetch_add(1, Ordering::Relaxed),
            QoS::ExactlyOnce => {
                self.rejected("QoS 2: device backends take QoS 0 and 1".into());
                return Err(End::Rejected);
            }
        };
        let active = shared.faults.borrow().clone();
        let faults = &active.faults;
        if faults.drop_rate > 0.0 && rand::rng().random::<f64>() < faults.drop_rate {
            metrics.dropped_one();
            return Err(End::Dropped);
        }
        if let Some(stall) = faults.stall {
            wait_out_stall(&shared.faults, stall).await;
        }
        if let Some(queue) = &active.capacity {
            match queue.admit(Instant::now()) {
                Some(finish) => tokio::time::sleep_until(finish).await,
                None => {
                    metrics.shed.fetch_add(1, Ordering::Relaxed);
                    return Err(End::Shed);
                }
            }
        }
        let acknowledged = publish.qos == QoS::AtLeastOnce;
        if acknowledged && let Some(latency) = &faults.latency {
            let delay = latency.sample(&mut rand::rng());
            precise_sleep(delay).await;
        }
        let summary = match check_publish(wires, client_id, &publish.topic, &publish.payload) {
            Ok(summary) => summary,
            Err(unfit) => {
                self.rejected(format!("{client_id}'s message on {:?}: {unfit}", printable(&publish.topic)));
                return Err(End::Rejected);
            }
        };
        if shared.registry.record(&summary, &publish.payload, crate::units::now_ms()).is_err() {
            return Err(End::RegistryFull);
        }
        metrics.accepted.fetch_add(1, Ordering::Relaxed);
        if acknowledged {
            self.send(&Packet::PubAck(PubAck::new(publish.pkid))).await?;
            counts.published(Published::Acked);
        } else {
            counts.published(Published::Taken);
        }
        metrics.heartbeat_took(started.elapsed());
        Ok(())
    }

    /// Counts a refused message, keeping the first refusal's words for
    /// `/stats`.
    fn rejected(&self, why: String) {
        self.shared.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.mqtt.published(Published::Rejected);
        self.shared.metrics.mqtt.first_rejection(why);
    }
}

/// A CONNACK return code from its number (1 to 5; the faults check it).
fn return_code(code: u8) -> ConnectReturnCode {
    match code {
        1 => ConnectReturnCode::RefusedProtocolVersion,
        2 => ConnectReturnCode::BadClientId,
        4 => ConnectReturnCode::BadUserNamePassword,
        5 => ConnectReturnCode::NotAuthorized,
        _ => ConnectReturnCode::ServiceUnavailable,
    }
}

/// The protocol level of the CONNECT at the head of `frame` (a whole
/// packet), if it is one: read before the codec, which takes only levels
/// 4 and 5 and would read a level-5 CONNECT as 3.1.1's.
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
    use rumqttc::mqttbytes::v4::{Login as Credentials, Publish, Subscribe, SubscribeFilter, Unsubscribe};
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
    async fn a_protocol_level_other_than_3_1_1_is_refused_with_connack_1_and_a_first_packet_not_connect_closes() {
        let shared = shared(None, Faults::default());
        let mut level5 = BytesMut::new();
        Packet::Connect(Connect::new("d-1")).write(&mut level5, MAX_PACKET).unwrap();
        level5[8] = 5;
        let (mut client, task) = session(&shared);
        client.raw(&level5).await;
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
}
