//! What a transport with sessions needs beyond one exchange: the device's
//! [`Identity`] to open its session with, and what an idle session did
//! ([`Idle`]). Below the rest of the seam: it reads only [`super::route`].
//!
//! HTTP has no sessions: a connection is anyone's, and credentials travel
//! on each request, so it asks for no identity and has no idle work
//! ([`super::Transport::sessions`], [`super::Transport::idles`]). An MQTT
//! session is one device's: its CONNECT carries the device's client id,
//! user name and password (or its client certificate), and between
//! heartbeats it sends keep-alives and reads what the broker pushes.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

/// Who a device is, to the far end of its session: its name and the
/// credentials its identities file (or its profile's rule) gives it.
/// Built for a device only when its transport opens sessions, each time
/// it opens one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The device's name (MQTT's client id).
    pub device: String,
    /// What the device logs in as, if its profile has a user name: a
    /// ThingsBoard access token, Hono's `{auth-id}@{tenant}`, Azure IoT
    /// Hub's `{hub}/{device}/?api-version=...`.
    pub username: Option<String>,
    /// Its password, if its profile has one (Hono's; Azure's SAS token).
    pub password: Option<String>,
    /// Its client certificate and key files (the identities file's `cert`
    /// and `key_file` columns), for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// What the far end publishes for the device if its session ends
    /// without a goodbye (MQTT's Will), if its fleet gives one.
    pub will: Option<LastWill>,
    /// Where the device's messages ask their answers to go (MQTT 5's
    /// Response Topic): its session subscribes to it when it opens.
    pub response_topic: Option<String>,
}

/// A device's Will: published by the broker, on the device's behalf, when
/// its session ends without a DISCONNECT (its power or network lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: String,
    pub payload: bytes::Bytes,
    pub qos: super::route::Qos,
    pub retain: bool,
}

/// Shows which credentials there are, never a password.
impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("device", &self.device)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("cert", &self.cert)
            .field("key_file", &self.key_file)
            .field("will", &self.will)
            .field("response_topic", &self.response_topic)
            .finish()
    }
}

/// What ended a wait on an idle session ([`super::Transport::idle`]).
/// The worker counts each and, but for `Closed`, has the session back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Idle {
    /// The session sent a keep-alive (MQTT's PINGREQ): nothing else went
    /// on it for its keep-alive interval.
    Keepalive,
    /// Something came in unasked: an acknowledgement after its exchange
    /// gave up on it, a command, a shadow delta.
    Inbound,
    /// The session ended, for this reason: the device opens a new one
    /// (at once after its reconnect delay, or at its next heartbeat), with
    /// its identity, counted as a connect.
    Closed(Closed),
    /// Nothing happened by the instant the wait was given: the device's
    /// next heartbeat is due.
    Until,
}

/// How a device reopens its session after the far end closed it (or it
/// broke, or an opening failed): at once, not at its next heartbeat, as a
/// device's client library does, after a delay that doubles with each
/// failed opening from `first` up to `max`, each drawn at random from its
/// upper half ("equal jitter"), so that a broker that dropped every
/// session at once gets its reconnect storm paced as real devices pace
/// it. A successful opening starts the doubling again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    pub first: std::time::Duration,
    pub max: std::time::Duration,
}

impl Reconnect {
    /// The delay before the opening that follows `failures` failed ones
    /// (0: the session was just lost), `unit` a random number in [0, 1).
    pub fn delay(&self, failures: u32, unit: f64) -> std::time::Duration {
        let ceiling = self.first.saturating_mul(1u32 << failures.min(20)).min(self.max);
        ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }
}

/// Why an idle session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Closed {
    /// The far end said goodbye (MQTT's DISCONNECT), with its reason code
    /// (MQTT 5's; none in 3.1.1).
    Disconnect(Option<u8>),
    /// The far end closed the connection without a word.
    EndOfStream,
    /// The connection broke (a reset, a write that failed, bytes that are
    /// not the protocol).
    Broken,
    /// The far end stopped answering: no answer to a keep-alive within a
    /// keep-alive interval (MQTT's PINGRESP).
    KeepaliveMissed,
}

/// The worker's call for an idle session back: a heartbeat of its device
/// is due now, so the wait on the session ends at once
/// ([`super::Transport::idle`]) rather than at the instant it was given.
/// A wait's own timer is coarse (tokio's: up to a millisecond late) while
/// the worker sends a heartbeat up to a millisecond early; without the
/// call a heartbeat could wait for its session (issue 33: a third of an
/// MQTT run's heartbeats were held about 0.2 ms).
///
/// Resolves when the call is made, or when its [`HandBackCall`] is
/// dropped (nobody keeps the place the session would go back to).
#[derive(Debug)]
pub struct HandBack(oneshot::Receiver<()>);

/// The worker's end of a [`HandBack`]: kept while the session is out.
#[derive(Debug)]
pub struct HandBackCall(oneshot::Sender<()>);

impl HandBack {
    /// A call and what it reaches.
    pub fn pair() -> (HandBackCall, HandBack) {
        let (tx, rx) = oneshot::channel();
        (HandBackCall(tx), HandBack(rx))
    }
}

impl HandBackCall {
    /// Asks for the session back.
    pub fn call(self) {
        let _ = self.0.send(());
    }
}

impl Future for HandBack {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_delay_doubles_to_its_ceiling_and_is_drawn_from_its_upper_half() {
        use std::time::Duration;
        let r = Reconnect { first: Duration::from_secs(1), max: Duration::from_secs(10) };
        assert_eq!(r.delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(r.delay(0, 0.999_999), Duration::from_secs(1) - Duration::from_micros(1) / 2);
        assert_eq!(r.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(r.delay(3, 0.0), Duration::from_secs(4));
        assert_eq!(r.delay(4, 0.0), Duration::from_secs(5), "the ceiling, halved");
        assert_eq!(r.delay(u32::MAX, 0.5), Duration::from_millis(7_500));
    }

    #[test]
    fn an_identity_s_debug_never_shows_its_password() {
        let id = Identity {
            device: "d-1".into(),
            username: Some("user".into()),
            password: Some("s3cr3t".into()),
            ..Identity::default()
        };
        let shown = format!("{id:?}");
        assert!(shown.contains("d-1") && shown.contains("user") && !shown.contains("s3cr3t"), "{shown}");
    }
}
