//! The run settings of a scenario: how long, against which target, over
//! which connections, and each fleet's schedule. Each value type checks
//! itself as it is read, so mistakes are reported where they are written.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::transport::Protocol;
use crate::transport::http::settings::{HttpVersion, SigV4Settings};
use crate::transport::settings::{ConnectionMode, SourceAddresses, TlsSettings};
use crate::units::DurationValue;

/// A target URL's scheme: the protocol it speaks, over TLS or not, and
/// its default port. A protocol's targets are one row here and one
/// [`TargetUrl`] variant.
struct Scheme {
    name: &'static str,
    protocol: Protocol,
    tls: bool,
    default_port: u16,
}

const SCHEMES: [Scheme; 4] = [
    Scheme { name: "http", protocol: Protocol::Http, tls: false, default_port: 80 },
    Scheme { name: "https", protocol: Protocol::Http, tls: true, default_port: 443 },
    Scheme { name: "mqtt", protocol: Protocol::Mqtt, tls: false, default_port: 1883 },
    Scheme { name: "mqtts", protocol: Protocol::Mqtt, tls: true, default_port: 8883 },
];

/// What to write instead of a URL that is not a target's.
const TARGET_FORMS: &str =
    "write \"builtin\", http://host:port, https://host:port, mqtt://host:port or mqtts://host:port";

/// Where heartbeats go: the built-in backend, or a URL whose scheme says
/// the protocol (`SCHEMES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUrl {
    /// The in-process reference backend on a loopback port.
    Builtin,
    /// An HTTP endpoint: `http://host:port`, or `https://host:port` (`tls`).
    Http { host: String, port: u16, tls: bool },
    /// An MQTT broker: `mqtt://host:port`, or `mqtts://host:port` (`tls`).
    Mqtt { host: String, port: u16, tls: bool },
}

impl TargetUrl {
    pub fn parse(text: &str) -> Result<TargetUrl, String> {
        match Self::split(text)? {
            (url, None) => Ok(url),
            (_, Some(_)) => Err(format!("{text:?}: give the path in target.path, not in the URL")),
        }
    }

    /// Reads a target URL that may carry the heartbeat's path (and query):
    /// `http://host:port/api/SendHeartbeat` is the URL and
    /// `Some("/api/SendHeartbeat")`; no path or `/` gives `None`.
    pub fn split(text: &str) -> Result<(TargetUrl, Option<String>), String> {
        if text == "builtin" {
            return Ok((TargetUrl::Builtin, None));
        }
        let uri: http::Uri = text.parse().map_err(|e| format!("{text:?} is not a URL ({e}); {TARGET_FORMS}"))?;
        let scheme = uri
            .scheme_str()
            .and_then(|name| SCHEMES.iter().find(|s| s.name.eq_ignore_ascii_case(name)))
            .ok_or_else(|| format!("{text:?}: {TARGET_FORMS}"))?;
        let (protocol, tls) = (scheme.protocol, scheme.tls);
        let path = (!matches!(uri.path(), "" | "/") || uri.query().is_some())
            .then(|| uri.path_and_query().map_or_else(|| "/".to_string(), |p| p.as_str().to_string()));
        let host = uri.host().ok_or_else(|| format!("{text:?} has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(format!(
                "{text:?} carries credentials before its host, which are never sent: put them in target.headers"
            ));
        }
        // Read from the text: `Uri::port` is `None` for one out of range.
        let authority = uri.authority().map_or("", |a| a.as_str());
        let after_host = authority.rsplit_once(']').map_or(authority, |(_, rest)| rest);
        let port = match after_host.rsplit_once(':') {
            None => scheme.default_port,
            Some((_, p)) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("{text:?}: port {p} is not a port (1 to 65535)")),
                Ok(n) => n,
            },
        };
        match protocol {
            Protocol::Http => Ok((TargetUrl::Http { host, port, tls }, path)),
            Protocol::Mqtt if path.is_some() => {
                Err(format!("{text:?}: an MQTT target has no path (each fleet's [fleets.mqtt] topic says where)"))
            }
            Protocol::Mqtt => Ok((TargetUrl::Mqtt { host, port, tls }, None)),
        }
    }

    /// The protocol the target speaks: HTTP for `http://`, `https://` and
    /// the built-in backend.
    pub fn protocol(&self) -> Protocol {
        match self {
            TargetUrl::Builtin | TargetUrl::Http { .. } => Protocol::Http,
            TargetUrl::Mqtt { .. } => Protocol::Mqtt,
        }
    }

    /// Whether its connections are TLS (`https://`, `mqtts://`).
    pub fn tls(&self) -> bool {
        matches!(self, TargetUrl::Http { tls: true, .. } | TargetUrl::Mqtt { tls: true, .. })
    }

    /// Whether the target runs on this machine: the built-in backend, a
    /// loopback address or `localhost`.
    pub fn is_local(&self) -> bool {
        match self {
            TargetUrl::Builtin => true,
            TargetUrl::Http { host, .. } | TargetUrl::Mqtt { host, .. } => {
                host.eq_ignore_ascii_case("localhost")
                    || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetUrl::Builtin => f.write_str("builtin"),
            TargetUrl::Http { host, port, tls } => {
                let scheme = if *tls { "https" } else { "http" };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")
                } else {
                    write!(f, "{scheme}://{host}:{port}")
                }
            }
            TargetUrl::Mqtt { host, port, tls } => {
                let scheme = if *tls { "mqtts" } else { "mqtt" };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")
                } else {
                    write!(f, "{scheme}://{host}:{port}")
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for TargetUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TargetUrl::parse(&text).map_err(de::Error::custom)
    }
}

/// A request header, its value read from the environment where the
/// scenario says `${env:NAME}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: http::HeaderName,
    pub value: http::HeaderValue,
    /// The value as written in the scenario (what reports show: a value
    /// read from the environment is a secret and never printed).
    pub written: String,
}

/// Expands every `${env:NAME}` in `text`.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after.find('}').ok_or_else(|| format!("unclosed \"${{\" in {text:?}"))?;
        let inner = &after[..end];
        let name = inner
            .strip_prefix("env:")
            .ok_or_else(|| format!("unknown placeholder \"${{{inner}}}\"; the only one is ${{env:NAME}}"))?;
        let value = lookup(name).ok_or_else(|| {
            format!("environment variable {name} is not set; set it before running (export {name}=...)")
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The target of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub url: TargetUrl,
    pub path: String,
    /// The whole heartbeat (connect, send, answer) must finish within this.
    pub timeout: Duration,
    pub connections: ConnectionMode,
    pub headers: Vec<Header>,
    pub http: HttpVersion,
    pub tls: TlsSettings,
    pub sigv4: Option<SigV4Settings>,
    /// Local addresses connections leave from, in turn (empty: the system's choice).
    pub source_addresses: Vec<std::net::IpAddr>,
    /// How an MQTT target's sessions are opened and kept (`[target.mqtt]`).
    pub mqtt: crate::transport::mqtt::MqttSettings,
}

impl Target {
    /// The host a device profile's credentials name (an Azure SAS token's
    /// resource): the URL's, or the built-in backend's.
    pub fn credential_host(&self) -> &str {
        match &self.url {
            TargetUrl::Http { host, .. } | TargetUrl::Mqtt { host, .. } => host,
            TargetUrl::Builtin => "127.0.0.1",
        }
    }
}

impl Default for Target {
    fn default() -> Self {
        Target {
            url: TargetUrl::Builtin,
            path: "/SendHeartbeat".into(),
            timeout: Duration::from_secs(2),
            connections: ConnectionMode::PerDevice,
            headers: Vec::new(),
            http: HttpVersion::Http1,
            tls: TlsSettings::default(),
            sigv4: None,
            source_addresses: Vec::new(),
            mqtt: crate::transport::mqtt::MqttSettings::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: Option<UrlWithPath>,
    path: Option<String>,
    timeout: Option<DurationValue>,
    connections: Option<ConnectionMode>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    http: Option<HttpVersion>,
    tls: Option<TlsSettings>,
    sigv4: Option<SigV4Settings>,
    source_addresses: Option<SourceAddresses>,
    mqtt: Option<crate::transport::mqtt::MqttSettings>,
}

/// `target.url` as written: the URL, and the path it carries if any
/// (read where it is written, so its errors point at it).
struct UrlWithPath(TargetUrl, Option<String>);

impl<'de> Deserialize<'de> for UrlWithPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (url, path) = TargetUrl::split(&text).map_err(de::Error::custom)?;
        Ok(UrlWithPath(url, path))
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawTarget::deserialize(d)?;
        let defaults = Target::default();
        let (url, url_path) = match raw.url {
            Some(UrlWithPath(url, path)) => (Some(url), path),
            None => (None, None),
        };
        let path_given = raw.path.is_some();
        let path = match (url_path, raw.path) {
            (Some(in_url), Some(given)) if in_url != given => {
                return Err(de::Error::custom(format!(
                    "the path is given twice, as {in_url:?} in url and as {given:?} in path: give it once"
                )));
            }
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => defaults.path,
        };
        if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(de::Error::custom(format!("path {path:?} must be a URL path starting with /")));
        }
        let timeout = raw.timeout.map_or(defaults.timeout, |t| t.0);
        if timeout.is_zero() {
            return Err(de::Error::custom("timeout must be above 0"));
        }
        let mut headers = Vec::new();
        for (name, written) in raw.headers {
            let header_name = http::HeaderName::try_from(name.as_str())
                .map_err(|_| de::Error::custom(format!("headers: {name:?} is not a valid header name")))?;
            let expanded = expand_env(&written, |n| std::env::var(n).ok())
                .map_err(|e| de::Error::custom(format!("headers.{name}: {e}")))?;
            let value = http::HeaderValue::try_from(expanded)
                .map_err(|_| de::Error::custom(format!("headers.{name}: not a valid header value")))?;
            headers.push(Header { name: header_name, value, written });
        }
        let url = url.unwrap_or(defaults.url);
        let tls = raw.tls.unwrap_or_default();
        tls.check().map_err(de::Error::custom)?;
        if !tls.is_default() && !url.tls() {
            return Err(de::Error::custom("tls settings need an https:// or mqtts:// url"));
        }
        if let Some(s) = &raw.sigv4 {
            s.check().map_err(de::Error::custom)?;
        }
        let connections = raw.connections.unwrap_or(defaults.connections);
        if let TargetUrl::Mqtt { .. } = url {
            // What an MQTT target's sessions do not have.
            let http_only = [
                ("path", path_given),
                ("headers", !headers.is_empty()),
                ("http", raw.http.is_some()),
                ("sigv4", raw.sigv4.is_some()),
            ];
            if let Some((key, _)) = http_only.iter().find(|(_, given)| *given) {
                return Err(de::Error::custom(format!(
                    "{key} is HTTP's; an MQTT target's sessions have none (its settings are in [target.mqtt])"
                )));
            }
            if connections != ConnectionMode::PerDevice {
                return Err(de::Error::custom(format!(
                    "connections = \"{connections}\": an MQTT session is its device's own (client id and login), so \
                     MQTT connections are per device: leave connections out"
                )));
            }
        } else if raw.mqtt.is_some() && url != TargetUrl::Builtin {
            // (Builtin speaks its fleets' protocol: checked with them.)
            return Err(de::Error::custom("[target.mqtt] is for an mqtt:// or mqtts:// url, or builtin's MQTT fleets"));
        }
        Ok(Target {
            url,
            path,
            timeout,
            connections,
            headers,
            http: raw.http.unwrap_or_default(),
            tls,
            sigv4: raw.sigv4,
            source_addresses: raw.source_addresses.map_or_else(Vec::new, |s| s.0),
            mqtt: raw.mqtt.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Rate, Share};

    #[test]
    fn shares_rates_and_urls_parse() {
        assert_eq!(Share::parse("10%"), Ok(Share(0.1)));
        assert_eq!(Share::parse("0.25"), Ok(Share(0.25)));
        assert!(Share::parse("150%").is_err());
        assert_eq!(Rate::parse("2000/s"), Ok(Rate(2000.0)));
        assert_eq!(Rate::parse("120/m"), Ok(Rate(2.0)));
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("fast").is_err());
        assert_eq!(TargetUrl::parse("builtin"), Ok(TargetUrl::Builtin));
        assert_eq!(
            TargetUrl::parse("http://127.0.0.1:8080"),
            Ok(TargetUrl::Http { host: "127.0.0.1".into(), port: 8080, tls: false })
        );
        assert_eq!(TargetUrl::parse("http://[::1]:9000").unwrap().to_string(), "http://[::1]:9000");
        assert_eq!(TargetUrl::parse("https://x").unwrap(), TargetUrl::Http { host: "x".into(), port: 443, tls: true });
        assert!(TargetUrl::parse("ftp://x").unwrap_err().contains("https://host:port"));
        assert_eq!(TargetUrl::parse("HTTP://x").unwrap(), TargetUrl::Http { host: "x".into(), port: 80, tls: false });
        // MQTT's schemes: mqtt:// is a broker; mqtts:// is refused with why.
        assert_eq!(
            TargetUrl::parse("mqtt://127.0.0.1").unwrap(),
            TargetUrl::Mqtt { host: "127.0.0.1".into(), port: 1883, tls: false }
        );
        assert_eq!(TargetUrl::parse("mqtt://[::1]:1884").unwrap().to_string(), "mqtt://[::1]:1884");
        assert!(TargetUrl::parse("mqtt://b:1883/x").unwrap_err().contains("no path"));
        let mqtts = TargetUrl::parse("MQTTS://broker").unwrap();
        assert_eq!(mqtts, TargetUrl::Mqtt { host: "broker".into(), port: 8883, tls: true });
        assert_eq!(mqtts.to_string(), "mqtts://broker:8883");
        assert!(TargetUrl::parse("http://x/SendHeartbeat").unwrap_err().contains("target.path"));
        // A port out of range is refused, never read as the scheme's default.
        for bad in ["http://127.0.0.1:99999", "http://127.0.0.1:65536", "http://127.0.0.1:0", "https://[::1]:70000"] {
            let e = TargetUrl::parse(bad).unwrap_err();
            assert!(e.contains("is not a port (1 to 65535)"), "{bad}: {e}");
        }
        assert_eq!(TargetUrl::parse("http://127.0.0.1:65535").unwrap().to_string(), "http://127.0.0.1:65535");
        let e = TargetUrl::parse("http://user:pw@127.0.0.1:80").unwrap_err();
        assert!(e.contains("credentials") && e.contains("target.headers"), "{e}");
        let (url, path) = TargetUrl::split("http://x:81/api/SendHeartbeat?v=2").unwrap();
        assert_eq!((url.to_string(), path.as_deref()), ("http://x:81".to_string(), Some("/api/SendHeartbeat?v=2")));
        assert_eq!(TargetUrl::split("http://x/").unwrap().1, None);
    }

    #[test]
    fn local_targets_are_the_builtin_loopback_and_localhost() {
        for local in ["builtin", "http://127.0.0.1:80", "http://127.9.9.9:1", "https://[::1]:9", "http://LocalHost:8"] {
            assert!(TargetUrl::parse(local).unwrap().is_local(), "{local}");
        }
        for remote in
            ["http://10.0.0.1:80", "https://example.com", "http://[2001:db8::1]:80", "http://localhost.example"]
        {
            assert!(!TargetUrl::parse(remote).unwrap().is_local(), "{remote}");
        }
    }

    #[test]
    fn env_placeholders_expand() {
        let env = |n: &str| (n == "KEY").then(|| "s3cret".to_string());
        assert_eq!(expand_env("Bearer ${env:KEY}", env), Ok("Bearer s3cret".into()));
        assert_eq!(expand_env("plain", env), Ok("plain".into()));
        assert!(expand_env("${env:NOPE}", env).unwrap_err().contains("NOPE is not set"));
        assert!(expand_env("${file:x}", env).unwrap_err().contains("unknown placeholder"));
        assert!(expand_env("${env:KEY", env).unwrap_err().contains("unclosed"));
    }
}
