//! HTTP's own settings of a target, as plain data read from a scenario:
//! the HTTP version, and AWS SigV4 signing of every request. Checked as
//! read; the credentials are found when a run starts ([`super::sigv4`]).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};

/// The HTTP version spoken to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    #[default]
    Http1,
    /// HTTP/2: ALPN `h2` over TLS, prior knowledge (h2c) without.
    Http2,
}

impl HttpVersion {
    /// The protocol TLS's ALPN offers for it.
    pub fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            HttpVersion::Http2 => vec![b"h2".to_vec()],
            HttpVersion::Http1 => vec![b"http/1.1".to_vec()],
        }
    }
}

impl fmt::Display for HttpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpVersion::Http1 => "HTTP/1.1",
            HttpVersion::Http2 => "HTTP/2",
        })
    }
}

impl<'de> Deserialize<'de> for HttpVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "1.1" | "1" => Ok(HttpVersion::Http1),
            "2" => Ok(HttpVersion::Http2),
            other => Err(de::Error::custom(format!("http is {other:?}; write \"1.1\" or \"2\""))),
        }
    }
}

/// AWS Signature Version 4 signing of every request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Settings {
    pub region: String,
    /// The signing name of the service (default `sagemaker`).
    #[serde(default = "default_service")]
    pub service: String,
    /// A profile of the shared credentials file, when the credentials are
    /// not in the environment (`AWS_ACCESS_KEY_ID`, ...).
    pub profile: Option<String>,
}

fn default_service() -> String {
    "sagemaker".into()
}

impl SigV4Settings {
    pub fn check(&self) -> Result<(), String> {
        let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok(&self.region) {
            return Err(format!("sigv4.region {:?} is not a region name such as \"us-west-2\"", self.region));
        }
        if !ok(&self.service) {
            return Err(format!("sigv4.service {:?} is not a signing name such as \"sagemaker\"", self.service));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_as_read() {
        let s: SigV4Settings = toml::from_str("region = \"us-west-2\"").unwrap();
        assert_eq!(s.service, "sagemaker");
        let s: SigV4Settings = toml::from_str("region = \"us west\"").unwrap();
        assert!(s.check().is_err());
        assert!(toml::from_str::<SigV4Settings>("region = \"x\"\nservise = \"s\"").is_err());
    }
}
