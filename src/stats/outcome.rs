//! How a sent heartbeat ended, as everything after the transport sees it:
//! a protocol-neutral [`OutcomeClass`], plus the protocol's own [`Code`]
//! when the backend answered.
//!
//! Transports report an [`Outcome`] (an HTTP status, a status judged by
//! the fleet's own rule, or a [`Failure`] without an answer). Reports,
//! gates, `compare`, live metrics and the dashboard count classes and
//! codes only, so a new protocol adds its mapping here (as
//! [`http_class`] is HTTP's) and a variant to [`Code`], and nothing above
//! changes. Classes are counted in a [`ClassCounts`], an array indexed by
//! class: the hot path adds one without a map or a string.

use std::fmt;
use std::ops::{Index, IndexMut};

use serde::{Deserialize, Serialize};

/// How a sent heartbeat ended, as a transport reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// An HTTP answer with this status: ok when 2xx.
    Status(u16),
    /// An HTTP answer judged by its fleet's own rule (a `custom` profile's
    /// success statuses): ok or not whatever the status; a failure is
    /// classed by its status, a 2xx one as [`OutcomeClass::OtherStatus`].
    Judged { status: u16, ok: bool },
    /// Any protocol's answer, in the class its protocol's own rule gives
    /// it, with the protocol's code when the answer carries one (an MQTT
    /// 3.1.1 PUBACK carries none). HTTP's answers are the two above: one
    /// status, the hot path's.
    Answered { class: OutcomeClass, code: Option<Code> },
    /// Written where the protocol acknowledges nothing (MQTT's QoS 0): a
    /// success, with nothing to time it to, so no latency.
    Sent,
    /// No (usable) answer.
    Failed(Failure),
}

/// Failures without an answer from the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// The whole heartbeat did not finish within the target's timeout.
    Timeout,
    /// The connection could not be made (refused, unreachable).
    Connect,
    /// The TLS handshake failed (untrusted or expired certificate, wrong
    /// name, refused client certificate).
    Tls,
    /// The connection broke (reset, closed early, broken pipe).
    Io,
    /// The answer was not valid in the protocol (not HTTP).
    Protocol,
}

/// The class of an outcome, whatever the protocol. Reports list them in
/// this order, and name them in snake case (`server_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeClass {
    /// The backend accepted the heartbeat (HTTP 2xx, or the statuses a
    /// `custom` profile accepts).
    Ok,
    /// The backend refused the message (HTTP 4xx other than 401, 403 and
    /// 429).
    Rejected,
    /// The backend refused the device's credentials (HTTP 401, 403).
    Auth,
    /// The backend told the device to slow down (HTTP 429).
    Throttled,
    /// The backend failed (HTTP 5xx).
    ServerError,
    /// An answer neither a success nor one of the above (HTTP 1xx and 3xx,
    /// or a 2xx a `custom` profile does not accept).
    OtherStatus,
    /// No answer within the target's timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The connection broke.
    Io,
    /// The answer was not valid in the protocol.
    Protocol,
}

impl OutcomeClass {
    /// How many classes there are.
    pub const COUNT: usize = 11;

    /// Every class, in report order.
    pub const ALL: [OutcomeClass; OutcomeClass::COUNT] = [
        OutcomeClass::Ok,
        OutcomeClass::Rejected,
        OutcomeClass::Auth,
        OutcomeClass::Throttled,
        OutcomeClass::ServerError,
        OutcomeClass::OtherStatus,
        OutcomeClass::Timeout,
        OutcomeClass::Connect,
        OutcomeClass::Tls,
        OutcomeClass::Io,
        OutcomeClass::Protocol,
    ];

    /// Every class but [`OutcomeClass::Ok`]: the failures, in report order.
    pub const FAILED: [OutcomeClass; OutcomeClass::COUNT - 1] = {
        let mut failed = [OutcomeClass::Rejected; OutcomeClass::COUNT - 1];
        let mut i = 0;
        while i < failed.len() {
            failed[i] = OutcomeClass::ALL[i + 1];
            i += 1;
        }
        failed
    };

    /// The name reports, gates and metrics use.
    pub const fn as_str(self) -> &'static str {
        match self {
            OutcomeClass::Ok => "ok",
            OutcomeClass::Rejected => "rejected",
            OutcomeClass::Auth => "auth",
            OutcomeClass::Throttled => "throttled",
            OutcomeClass::ServerError => "server_error",
            OutcomeClass::OtherStatus => "other_status",
            OutcomeClass::Timeout => "timeout",
            OutcomeClass::Connect => "connect",
            OutcomeClass::Tls => "tls",
            OutcomeClass::Io => "io",
            OutcomeClass::Protocol => "protocol",
        }
    }

    pub const fn is_ok(self) -> bool {
        matches!(self, OutcomeClass::Ok)
    }

    /// Whether the backend answered (with a [`Code`]), as opposed to a
    /// failure without an answer (timeout, connect, TLS, I/O, protocol).
    pub const fn is_answer(self) -> bool {
        matches!(
            self,
            OutcomeClass::Ok
                | OutcomeClass::Rejected
                | OutcomeClass::Auth
                | OutcomeClass::Throttled
                | OutcomeClass::ServerError
                | OutcomeClass::OtherStatus
        )
    }

    /// This class alone, as a slice that lives forever.
    pub fn alone(self) -> &'static [OutcomeClass] {
        static ALL: [OutcomeClass; OutcomeClass::COUNT] = OutcomeClass::ALL;
        std::slice::from_ref(&ALL[self as usize])
    }
}

impl fmt::Display for OutcomeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an outcome class; the message lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not an outcome class; the classes are {}", OutcomeClass::ALL.map(OutcomeClass::as_str).join(", "))]
pub struct UnknownClass {
    pub name: String,
}

impl std::str::FromStr for OutcomeClass {
    type Err = UnknownClass;

    fn from_str(name: &str) -> Result<OutcomeClass, UnknownClass> {
        OutcomeClass::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| UnknownClass { name: name.to_string() })
    }
}

/// The class of an HTTP answer with `status`, by the usual meaning of
/// HTTP statuses (a `custom` profile's own rule is [`Outcome::Judged`]).
pub const fn http_class(status: u16) -> OutcomeClass {
    match status {
        200..=299 => OutcomeClass::Ok,
        401 | 403 => OutcomeClass::Auth,
        429 => OutcomeClass::Throttled,
        400..=499 => OutcomeClass::Rejected,
        500..=599 => OutcomeClass::ServerError,
        _ => OutcomeClass::OtherStatus,
    }
}

/// The class of an MQTT answer with `code`: a 3.1.1 CONNACK return code
/// (1 to 5) or an MQTT 5 reason code (below 0x80 a success, from 0x80 a
/// failure), by the codes' meaning in the MQTT 3.1.1 (3.2.2.3) and 5.0
/// (2.4, Reason Code) specifications.
pub const fn mqtt_class(code: u8) -> OutcomeClass {
    match code {
        0 => OutcomeClass::Ok,
        // 3.1.1: unacceptable protocol version, identifier rejected.
        1 | 2 => OutcomeClass::Rejected,
        // 3.1.1: server unavailable.
        3 => OutcomeClass::ServerError,
        // 3.1.1: bad user name or password, not authorized.
        4 | 5 => OutcomeClass::Auth,
        // MQTT 5 successes (0x10 no matching subscribers, ...).
        6..=0x7f => OutcomeClass::Ok,
        // Bad user name or password, not authorized, bad authentication method.
        0x86 | 0x87 | 0x8c => OutcomeClass::Auth,
        // Server busy, quota exceeded, connection rate exceeded.
        0x89 | 0x97 | 0x9f => OutcomeClass::Throttled,
        // Unspecified error, server unavailable, server shutting down.
        0x80 | 0x88 | 0x8b => OutcomeClass::ServerError,
        // Malformed packet, protocol error, implementation specific,
        // unsupported protocol version, client identifier not valid, topic
        // name invalid, packet identifier in use, packet too large, payload
        // format invalid.
        0x81..=0x85 | 0x90 | 0x91 | 0x95 | 0x99 => OutcomeClass::Rejected,
        _ => OutcomeClass::OtherStatus,
    }
}

impl Failure {
    pub const fn class(self) -> OutcomeClass {
        match self {
            Failure::Timeout => OutcomeClass::Timeout,
            Failure::Connect => OutcomeClass::Connect,
            Failure::Tls => OutcomeClass::Tls,
            Failure::Io => OutcomeClass::Io,
            Failure::Protocol => OutcomeClass::Protocol,
        }
    }
}

impl Outcome {
    #[inline]
    pub const fn class(self) -> OutcomeClass {
        match self {
            Outcome::Status(status) => http_class(status),
            Outcome::Judged { ok: true, .. } => OutcomeClass::Ok,
            Outcome::Judged { status: 200..=299, .. } => OutcomeClass::OtherStatus,
            Outcome::Judged { status, .. } => http_class(status),
            Outcome::Answered { class, .. } => class,
            Outcome::Sent => OutcomeClass::Ok,
            Outcome::Failed(f) => f.class(),
        }
    }

    /// The protocol's own code of the answer, when there was one.
    #[inline]
    pub const fn code(self) -> Option<Code> {
        match self {
            Outcome::Status(status) | Outcome::Judged { status, .. } => Some(Code::Http(status)),
            Outcome::Answered { code, .. } => code,
            Outcome::Sent | Outcome::Failed(_) => None,
        }
    }

    pub const fn is_ok(self) -> bool {
        self.class().is_ok()
    }
}

/// A protocol's own code for an answer: what reports list beside the
/// classes (`codes.http."503"`) and gates read as `code.PROTOCOL.CODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// An HTTP status.
    Http(u16),
    /// An MQTT return or reason code: a 3.1.1 CONNACK's return code (1 to
    /// 5), or an MQTT 5 reason code (CONNACK, PUBACK, DISCONNECT).
    Mqtt(u8),
}

impl Code {
    /// The protocols that have codes, as reports name them.
    pub const PROTOCOLS: [&'static str; 2] = ["http", "mqtt"];

    /// The protocol's name, as reports key the codes by.
    pub const fn protocol(self) -> &'static str {
        match self {
            Code::Http(_) => "http",
            Code::Mqtt(_) => "mqtt",
        }
    }

    /// The code's number in its protocol.
    pub const fn value(self) -> u16 {
        match self {
            Code::Http(status) => status,
            Code::Mqtt(code) => code as u16,
        }
    }

    /// The code `value` (as written in a report or a gate) of `protocol`,
    /// if it is one: HTTP statuses are three digits.
    pub fn parse(protocol: &str, value: &str) -> Option<Code> {
        match protocol {
            "http" if value.len() == 3 => value.parse().ok().filter(|s| (100..=999).contains(s)).map(Code::Http),
            "mqtt" if !value.is_empty() && value.len() <= 3 && !value.starts_with('+') => {
                value.parse().ok().map(Code::Mqtt)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Code {
    /// `http 503`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol(), self.value())
    }
}

/// One value per outcome class, indexed by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PerClass<T>([T; OutcomeClass::COUNT]);

/// Outcomes counted by class.
pub type ClassCounts = PerClass<u64>;

impl<T> PerClass<T> {
    /// Each class with its value, in report order.
    pub fn iter(&self) -> impl Iterator<Item = (OutcomeClass, &T)> {
        OutcomeClass::ALL.into_iter().zip(&self.0)
    }

    /// The failure classes with their values, in report order.
    pub fn failed_iter(&self) -> impl Iterator<Item = (OutcomeClass, &T)> {
        self.iter().skip(1)
    }
}

impl<T> Index<OutcomeClass> for PerClass<T> {
    type Output = T;

    #[inline]
    fn index(&self, class: OutcomeClass) -> &T {
        &self.0[class as usize]
    }
}

impl<T> IndexMut<OutcomeClass> for PerClass<T> {
    #[inline]
    fn index_mut(&mut self, class: OutcomeClass) -> &mut T {
        &mut self.0[class as usize]
    }
}

impl ClassCounts {
    /// The ok ones.
    pub fn ok(&self) -> u64 {
        self[OutcomeClass::Ok]
    }

    /// Those of every class but ok.
    pub fn failed(&self) -> u64 {
        self.failed_iter().map(|(_, n)| n).sum()
    }

    /// Those of every class.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub fn add(&mut self, other: &ClassCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_fall_into_their_classes() {
        use OutcomeClass::*;
        let cases = [
            (Outcome::Status(200), Ok),
            (Outcome::Status(204), Ok),
            (Outcome::Status(400), Rejected),
            (Outcome::Status(404), Rejected),
            (Outcome::Status(409), Rejected),
            (Outcome::Status(401), Auth),
            (Outcome::Status(403), Auth),
            (Outcome::Status(429), Throttled),
            (Outcome::Status(500), ServerError),
            (Outcome::Status(503), ServerError),
            (Outcome::Status(302), OtherStatus),
            (Outcome::Status(101), OtherStatus),
            (Outcome::Status(600), OtherStatus),
            (Outcome::Judged { status: 302, ok: true }, Ok),
            (Outcome::Judged { status: 503, ok: true }, Ok),
            (Outcome::Judged { status: 204, ok: false }, OtherStatus),
            (Outcome::Judged { status: 409, ok: false }, Rejected),
            (Outcome::Judged { status: 401, ok: false }, Auth),
            (Outcome::Judged { status: 429, ok: false }, Throttled),
            (Outcome::Judged { status: 502, ok: false }, ServerError),
            (Outcome::Failed(Failure::Timeout), Timeout),
            (Outcome::Failed(Failure::Connect), Connect),
            (Outcome::Failed(Failure::Io), Io),
            (Outcome::Failed(Failure::Tls), Tls),
            (Outcome::Failed(Failure::Protocol), Protocol),
        ];
        for (o, class) in cases {
            assert_eq!(o.class(), class, "{o:?}");
            assert_eq!(o.is_ok(), class == Ok, "{o:?}");
            assert_eq!(o.code().is_some(), class.is_answer(), "{o:?}: a code exactly when answered");
        }
        assert_eq!(Outcome::Judged { status: 204, ok: false }.code(), Some(Code::Http(204)));
        assert_eq!(Outcome::Failed(Failure::Io).code(), None);
    }

    #[test]
    fn classes_have_one_name_each_and_read_back() {
        assert_eq!(OutcomeClass::ALL[0], OutcomeClass::Ok);
        assert_eq!(OutcomeClass::ALL[1..], OutcomeClass::FAILED);
        for (i, c) in OutcomeClass::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i, "ALL is in declaration order");
            assert_eq!(c.as_str().parse::<OutcomeClass>(), Result::Ok(c));
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str(), "serde agrees with as_str");
            assert_eq!(c.alone(), [c]);
        }
        let e = "http_5xx".parse::<OutcomeClass>().unwrap_err().to_string();
        assert!(e.contains("\"http_5xx\"") && e.contains("server_error, other_status"), "{e}");
    }

    #[test]
    fn codes_name_their_protocol() {
        assert_eq!((Code::Http(503).protocol(), Code::Http(503).value()), ("http", 503));
        assert_eq!(Code::Http(503).to_string(), "http 503");
        assert_eq!(Code::parse("http", "503"), Some(Code::Http(503)));
        for (protocol, value) in [("http", "99"), ("http", "5030"), ("http", "abc"), ("coap", "404")] {
            assert_eq!(Code::parse(protocol, value), None, "{protocol} {value}");
        }
    }

    #[test]
    fn class_counts_add_and_split_ok_from_failed() {
        let mut a = ClassCounts::default();
        a[OutcomeClass::Ok] += 5;
        a[OutcomeClass::Throttled] += 2;
        let mut b = ClassCounts::default();
        b[OutcomeClass::Io] += 1;
        b[OutcomeClass::Ok] += 1;
        a.add(&b);
        assert_eq!((a.ok(), a.failed(), a.total()), (6, 3, 9));
        let failed: Vec<(OutcomeClass, u64)> = a.failed_iter().filter(|(_, n)| **n > 0).map(|(c, n)| (c, *n)).collect();
        assert_eq!(failed, [(OutcomeClass::Throttled, 2), (OutcomeClass::Io, 1)]);
    }

    #[test]
    fn mqtt_codes_have_their_specifications_classes() {
        use OutcomeClass::*;
        for (code, class) in [
            (0, Ok),
            (0x10, Ok),
            (1, Rejected),
            (2, Rejected),
            (3, ServerError),
            (4, Auth),
            (5, Auth),
            (0x80, ServerError),
            (0x86, Auth),
            (0x87, Auth),
            (0x89, Throttled),
            (0x97, Throttled),
            (0x9f, Throttled),
            (0x88, ServerError),
            (0x90, Rejected),
            (0x99, Rejected),
            (0xa2, OtherStatus),
        ] {
            assert_eq!(mqtt_class(code), class, "code {code:#x}");
        }
        assert_eq!(Code::parse("mqtt", "135"), Some(Code::Mqtt(0x87)));
        for bad in ["", "256", "+1", "1000", "x"] {
            assert_eq!(Code::parse("mqtt", bad), None, "{bad:?}");
        }
        assert_eq!(Code::Mqtt(0x87).to_string(), "mqtt 135");
    }
}
