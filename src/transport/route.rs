//! Where a message goes, in its protocol's terms, and which protocols
//! there are. A leaf: the device profiles (`wire/`) build routes and the
//! transports read them, and neither needs the other for it.
//!
//! A heartbeat carries a [`Route`]: the target's own request (the
//! endpoint's, every `sagemaker-edge` heartbeat), or an HTTP request of
//! its own ([`HttpRoute`]: method, path and headers). An MQTT message will
//! be addressed by topic, QoS and retain in a variant beside `Http`; a
//! device's credentials belong to its session then ([`super::Identity`]),
//! not to each message.

use std::fmt;

use http::HeaderValue;

/// A protocol a target speaks and a profile's routes are made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.1 or HTTP/2, over TCP or TLS (`http://`, `https://`, `builtin`).
    Http,
    /// MQTT, each device its own session (`mqtt://`).
    Mqtt,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "HTTP",
            Protocol::Mqtt => "MQTT",
        })
    }
}

/// Where one message goes.
#[derive(Debug, Clone, Default)]
pub enum Route {
    /// The target's own request: for HTTP, `POST` to the target's path
    /// with the endpoint's headers (encoded once; the hot path).
    #[default]
    Endpoint,
    /// An HTTP request of its own. Boxed: most heartbeats have none, and
    /// every exchange future carries a route (a `Route` is one pointer).
    Http(Box<HttpRoute>),
    /// An MQTT message's topic, QoS and retain flag.
    Mqtt(Box<MqttRoute>),
}

impl Route {
    /// The protocol the route is for; `None` for the endpoint's own
    /// request, which every protocol has.
    pub fn protocol(&self) -> Option<Protocol> {
        match self {
            Route::Endpoint => None,
            Route::Http(_) => Some(Protocol::Http),
            Route::Mqtt(_) => Some(Protocol::Mqtt),
        }
    }

    /// The HTTP request's own target and headers, if it has them.
    pub fn http(&self) -> Option<&HttpRoute> {
        match self {
            Route::Http(r) => Some(r),
            Route::Endpoint | Route::Mqtt(_) => None,
        }
    }
}

/// An HTTP request's own method, target and headers, beside the endpoint's.
#[derive(Debug, Clone)]
pub struct HttpRoute {
    /// The method (the endpoint's is `POST`).
    pub method: http::Method,
    /// The path and query, e.g. `/api/v1/TOKEN/telemetry`.
    pub target: http::uri::PathAndQuery,
    /// Added after the endpoint's headers (replacing one of the same name).
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
}

/// MQTT's delivery guarantee for a message: at most once (no
/// acknowledgement) or at least once (a PUBACK). Exactly once (QoS 2) is
/// not sent: AWS IoT and Azure IoT Hub refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Qos {
    AtMostOnce,
    #[default]
    AtLeastOnce,
}

impl Qos {
    pub fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        }
    }
}

/// Where an MQTT message goes: its topic, QoS and retain flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttRoute {
    pub topic: String,
    pub qos: Qos,
    pub retain: bool,
    /// Set when the message is observed end to end (its fleet's
    /// `observe`): its intended time, in nanoseconds since the UNIX epoch,
    /// which the message carries to the observer ([`Outgoing::stamp`]
    /// fills it in; 0 until then).
    ///
    /// [`Outgoing::stamp`]: super::Outgoing::stamp
    pub observed: Option<u64>,
}

impl From<MqttRoute> for Route {
    fn from(route: MqttRoute) -> Route {
        Route::Mqtt(Box::new(route))
    }
}

impl From<HttpRoute> for Route {
    fn from(route: HttpRoute) -> Route {
        Route::Http(Box::new(route))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_a_pointer_and_its_protocol() {
        // Each protocol's own route is boxed: every exchange future carries one.
        assert_eq!(std::mem::size_of::<Route>(), 2 * std::mem::size_of::<usize>());
        assert_eq!(Route::Endpoint.protocol(), None);
        let r: Route = HttpRoute { method: http::Method::PUT, target: "/x".parse().unwrap(), headers: vec![] }.into();
        assert_eq!(r.protocol(), Some(Protocol::Http));
        assert_eq!(r.http().map(|h| h.target.as_str()), Some("/x"));
    }
}
