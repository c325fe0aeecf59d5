//! The transport settings every protocol reads, as plain data read from a
//! scenario: the connection mode, TLS and the local addresses connections
//! leave from (a protocol's own settings are in its folder:
//! [`super::http::settings`]). Checked as read; files (certificates, keys)
//! are read when a run starts.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// How a fleet's devices reach the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionMode {
    /// Each device keeps its own keep-alive connection, as real devices do.
    PerDevice,
    /// Devices share at most this many keep-alive connections.
    Pool(u32),
    /// A new connection for every heartbeat (connection storms).
    NewPerRequest,
}

impl fmt::Display for ConnectionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionMode::PerDevice => f.write_str("per-device"),
            ConnectionMode::Pool(n) => write!(f, "pool of {n}"),
            ConnectionMode::NewPerRequest => f.write_str("new-per-request"),
        }
    }
}

impl<'de> Deserialize<'de> for ConnectionMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConnectionMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""per-device", "new-per-request" or { pool = N }"#)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ConnectionMode, E> {
                match s {
                    "per-device" => Ok(ConnectionMode::PerDevice),
                    "new-per-request" => Ok(ConnectionMode::NewPerRequest),
                    other => Err(E::custom(format!(
                        r#"unknown connection mode {other:?}; use "per-device", "new-per-request" or {{ pool = N }}"#
                    ))),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ConnectionMode, A::Error> {
                let mut pool = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "pool" {
                        return Err(de::Error::custom(format!("unknown key {key:?}; write {{ pool = N }}")));
                    }
                    let n: u32 = map.next_value()?;
                    if n == 0 {
                        return Err(de::Error::custom("a pool needs at least 1 connection"));
                    }
                    pool = Some(n);
                }
                pool.map(ConnectionMode::Pool).ok_or_else(|| de::Error::custom("write { pool = N }"))
            }
        }
        d.deserialize_any(V)
    }
}

/// TLS settings of an `https://` target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the CA certificates to trust instead of the platform's roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain and key, for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Accept any server certificate (testing only; the summary warns).
    #[serde(default)]
    pub insecure: bool,
    /// The name to verify the server's certificate against (default: the URL's host).
    pub server_name: Option<String>,
}

impl TlsSettings {
    pub fn check(&self) -> Result<(), String> {
        match (&self.cert, &self.key) {
            (Some(_), None) => Err("tls.cert needs tls.key (the client certificate's private key)".into()),
            (None, Some(_)) => Err("tls.key needs tls.cert".into()),
            _ if self.insecure && self.ca.is_some() => {
                Err("tls.insecure accepts any certificate, so tls.ca would be ignored: give one of them".into())
            }
            _ => Ok(()),
        }
    }

    pub fn is_default(&self) -> bool {
        *self == TlsSettings::default()
    }
}

/// Local addresses to spread connections over: a list of addresses, or
/// one CIDR block (its host addresses, at most 256).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceAddresses(pub Vec<IpAddr>);

/// The most source addresses a scenario may list.
pub const MAX_SOURCE_ADDRESSES: usize = 256;

impl SourceAddresses {
    pub fn parse_cidr(text: &str) -> Result<Vec<IpAddr>, String> {
        let (base, bits) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR block"))?;
        let base: IpAddr = base.parse().map_err(|_| format!("{text:?}: {base:?} is not an IP address"))?;
        let bits: u32 = bits.parse().map_err(|_| format!("{text:?}: {bits:?} is not a prefix length"))?;
        let IpAddr::V4(v4) = base else {
            return Err(format!("{text:?}: give IPv6 source addresses one by one"));
        };
        if !(24..=32).contains(&bits) {
            return Err(format!("{text:?}: the prefix must be /24 to /32 (at most {MAX_SOURCE_ADDRESSES} addresses)"));
        }
        let size = 1u32 << (32 - bits);
        let start = u32::from(v4) & !(size - 1);
        // A /31 or /32 is all hosts; otherwise skip the network and broadcast addresses.
        let hosts: Vec<u32> =
            if size <= 2 { (start..start + size).collect() } else { (start + 1..start + size - 1).collect() };
        Ok(hosts.into_iter().map(|a| IpAddr::V4(a.into())).collect())
    }
}

impl<'de> Deserialize<'de> for SourceAddresses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Cidr(String),
            List(Vec<String>),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            de::Error::custom("source_addresses: write a list of addresses or a CIDR block such as \"127.0.0.0/28\"")
        })?;
        let addrs = match raw {
            Raw::Cidr(text) => SourceAddresses::parse_cidr(&text).map_err(de::Error::custom)?,
            Raw::List(items) => items
                .iter()
                .map(|a| {
                    a.parse::<IpAddr>()
                        .map_err(|_| de::Error::custom(format!("source_addresses: {a:?} is not an IP address")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if addrs.is_empty() || addrs.len() > MAX_SOURCE_ADDRESSES {
            return Err(de::Error::custom(format!(
                "source_addresses: give 1 to {MAX_SOURCE_ADDRESSES} addresses, not {}",
                addrs.len()
            )));
        }
        for (i, a) in addrs.iter().enumerate() {
            if addrs[..i].contains(a) {
                return Err(de::Error::custom(format!("source_addresses: {a} is listed twice")));
            }
        }
        Ok(SourceAddresses(addrs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks_give_their_host_addresses() {
        let a = SourceAddresses::parse_cidr("127.0.0.0/29").unwrap();
        assert_eq!(a.first().unwrap().to_string(), "127.0.0.1");
        assert_eq!(a.len(), 6);
        assert_eq!(SourceAddresses::parse_cidr("10.0.0.5/32").unwrap().len(), 1);
        assert!(SourceAddresses::parse_cidr("10.0.0.0/8").unwrap_err().contains("/24 to /32"));
        assert!(SourceAddresses::parse_cidr("::1/128").unwrap_err().contains("one by one"));
    }

    #[test]
    fn settings_are_checked_as_read() {
        let tls: TlsSettings = toml::from_str("cert = \"c.pem\"").unwrap();
        assert!(tls.check().unwrap_err().contains("needs tls.key"));
    }
}
