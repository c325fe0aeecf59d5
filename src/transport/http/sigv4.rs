//! AWS Signature Version 4 for every heartbeat, with the `aws-sigv4`
//! crate. Credentials come from the standard environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or,
//! failing those, a profile of the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`; profile
//! from the scenario, `AWS_PROFILE`, or `default`). They are never
//! printed, reported or logged.

use std::path::PathBuf;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use super::settings::SigV4Settings;

/// Signs requests for one service and region.
#[derive(Clone)]
pub struct Signer {
    credentials: Credentials,
    region: String,
    service: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("Signer").field("region", &self.region).field("service", &self.service).finish_non_exhaustive()
    }
}

/// Why a request cannot be signed: no credentials, or what the signing
/// library refused.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(
        "sigv4: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add a [{profile}] \
         profile to {}",
        path.display()
    )]
    NoCredentials { profile: String, path: PathBuf },
    #[error("sigv4: profile [{profile}] of {} lacks aws_access_key_id or aws_secret_access_key", path.display())]
    IncompleteProfile { profile: String, path: PathBuf },
    #[error("sigv4: {0}")]
    Signing(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn signing(e: impl std::error::Error + Send + Sync + 'static) -> SignError {
    SignError::Signing(Box::new(e))
}

impl Signer {
    /// The signer the settings describe, with credentials from the
    /// environment or the shared credentials file.
    pub fn new(settings: &SigV4Settings) -> Result<Signer, SignError> {
        let credentials = credentials(settings.profile.as_deref(), |n| std::env::var(n).ok())?;
        Ok(Signer { credentials, region: settings.region.clone(), service: settings.service.clone() })
    }

    /// A signer with the given keys (tests).
    pub fn with_keys(access_key: &str, secret_key: &str, region: &str, service: &str) -> Signer {
        Signer {
            credentials: Credentials::new(access_key, secret_key, None, None, "fleetstorm"),
            region: region.into(),
            service: service.into(),
        }
    }

    /// Adds the SigV4 headers (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` with session credentials) to `request`,
    /// whose URI must be absolute.
    pub fn sign<B>(&self, request: &mut http::Request<B>, body: &[u8], now: SystemTime) -> Result<(), SignError> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(now)
            .settings(SigningSettings::default())
            .build()
            .map_err(signing)?
            .into();
        let uri = request.uri().to_string();
        let headers = request.headers().iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let signable = SignableRequest::new(request.method().as_str(), uri, headers, SignableBody::Bytes(body))
            .map_err(signing)?;
        let (instructions, _signature) = sign(signable, &params).map_err(signing)?.into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}

/// A SigV4 `Authorization` header's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

impl<'a> Authorization<'a> {
    /// `AWS4-HMAC-SHA256 Credential={key}/{date}/{region}/{service}/aws4_request,
    /// SignedHeaders={h1;h2}, Signature={hex}`, if `text` is that.
    pub fn parse(text: &'a str) -> Option<Authorization<'a>> {
        let rest = text.strip_prefix("AWS4-HMAC-SHA256 ")?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',').map(str::trim) {
            match part.split_once('=')? {
                ("Credential", v) => credential = Some(v),
                ("SignedHeaders", v) => signed = Some(v),
                ("Signature", v) => signature = Some(v),
                _ => return None,
            }
        }
        let mut scope = credential?.split('/');
        let (access_key, _date, region, service) = (scope.next()?, scope.next()?, scope.next()?, scope.next()?);
        if scope.next() != Some("aws4_request") || scope.next().is_some() {
            return None;
        }
        let signature = signature?;
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Authorization { access_key, region, service, signed_headers: signed?.split(';').collect(), signature })
    }
}

/// Why a request's SigV4 signature is not this signer's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no SigV4 Authorization header")]
    Missing,
    #[error("the Authorization header is not SigV4")]
    Malformed,
    #[error("the credential scope is for service {0:?}")]
    WrongService(String),
    #[error("an unknown access key")]
    UnknownKey,
    #[error("no X-Amz-Date, or not one")]
    NoDate,
    #[error("the signature does not match")]
    Mismatch,
}

impl Signer {
    /// Checks the SigV4 signature of a request as it arrived (`uri`
    /// absolute), for `service`: signs the same method, URI, signed
    /// headers and body with these credentials at the request's own
    /// X-Amz-Date, in its scope's region, and compares.
    pub fn verify(
        &self,
        service: &str,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        let text = headers.get(http::header::AUTHORIZATION).ok_or(VerifyError::Missing)?;
        let auth =
            Authorization::parse(text.to_str().map_err(|_| VerifyError::Malformed)?).ok_or(VerifyError::Malformed)?;
        if auth.service != service {
            return Err(VerifyError::WrongService(auth.service.to_string()));
        }
        if auth.access_key != self.credentials.access_key_id() {
            return Err(VerifyError::UnknownKey);
        }
        let date = headers.get("x-amz-date").and_then(|d| d.to_str().ok()).ok_or(VerifyError::NoDate)?;
        let when = amz_date(date).ok_or(VerifyError::NoDate)?;
        let mut rebuilt = http::Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .body(())
            .map_err(|_| VerifyError::Malformed)?;
        for name in &auth.signed_headers {
            if let Some(value) = headers.get(*name) {
                rebuilt
                    .headers_mut()
                    .insert(http::HeaderName::try_from(*name).map_err(|_| VerifyError::Malformed)?, value.clone());
            }
        }
        let signer = Signer {
            credentials: self.credentials.clone(),
            region: auth.region.to_string(),
            service: service.to_string(),
        };
        signer.sign(&mut rebuilt, body, when).map_err(|_| VerifyError::Malformed)?;
        let ours = rebuilt
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(Authorization::parse);
        match ours {
            Some(ours) if ours.signature == auth.signature && ours.signed_headers == auth.signed_headers => Ok(()),
            _ => Err(VerifyError::Mismatch),
        }
    }
}

/// An X-Amz-Date (`20261202T031546Z`) as a time.
fn amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13],
        &text[13..15]
    );
    humantime::parse_rfc3339(&rfc).ok()
}

/// Credentials from the environment (`lookup`), or else the shared file.
fn credentials(profile: Option<&str>, lookup: impl Fn(&str) -> Option<String>) -> Result<Credentials, SignError> {
    if let (Some(key), Some(secret)) = (lookup("AWS_ACCESS_KEY_ID"), lookup("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials::new(key, secret, lookup("AWS_SESSION_TOKEN"), None, "environment"));
    }
    let path = match lookup("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(lookup("HOME").unwrap_or_default()).join(".aws/credentials"),
    };
    let profile = profile.map(str::to_string).or_else(|| lookup("AWS_PROFILE")).unwrap_or_else(|| "default".into());
    let not_found = || SignError::NoCredentials { profile: profile.clone(), path: path.clone() };
    let file = ini::Ini::load_from_file(&path).map_err(|_| not_found())?;
    let section = file.section(Some(profile.as_str())).ok_or_else(not_found)?;
    let (Some(key), Some(secret)) = (section.get("aws_access_key_id"), section.get("aws_secret_access_key")) else {
        return Err(SignError::IncompleteProfile { profile, path });
    };
    Ok(Credentials::new(key, secret, section.get("aws_session_token").map(str::to_string), None, "profile"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_verifies_and_a_changed_one_does_not() {
        let signer = Signer::with_keys("AKIDTEST", "secret/KEY+1", "eu-west-1", "iotdata");
        let mut req = http::Request::builder()
            .method("POST")
            .uri("http://127.0.0.1:8443/things/pump-7/shadow")
            .header("host", "127.0.0.1:8443")
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let body = br#"{"state":{"reported":{"rpm":900}}}"#;
        signer.sign(&mut req, body, SystemTime::now()).unwrap();
        let (method, uri, headers) = (req.method().clone(), req.uri().clone(), req.headers().clone());
        assert_eq!(signer.verify("iotdata", &method, &uri, &headers, body), Ok(()));
        assert_eq!(signer.verify("iotdata", &method, &uri, &headers, b"{}"), Err(VerifyError::Mismatch));
        let other: http::Uri = "http://127.0.0.1:8443/things/pump-8/shadow".parse().unwrap();
        assert_eq!(signer.verify("iotdata", &method, &other, &headers, body), Err(VerifyError::Mismatch));
        let wrong = Signer::with_keys("AKIDTEST", "another secret", "eu-west-1", "iotdata");
        assert_eq!(wrong.verify("iotdata", &method, &uri, &headers, body), Err(VerifyError::Mismatch));
        assert_eq!(
            signer.verify("sagemaker", &method, &uri, &headers, body),
            Err(VerifyError::WrongService("iotdata".into()))
        );
        assert_eq!(signer.verify("iotdata", &method, &uri, &http::HeaderMap::new(), body), Err(VerifyError::Missing));
        assert_eq!(amz_date("20261202T031546Z"), humantime::parse_rfc3339("2026-12-02T03:15:46Z").ok());
    }

    #[test]
    fn credentials_come_from_the_environment_then_the_file() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
        };
        let c = credentials(None, env(&[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "S")])).unwrap();
        assert_eq!(c.access_key_id(), "AKID");
        let dir = std::env::temp_dir().join(format!("fleetstorm-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = A1\naws_secret_access_key = S1\n[ci]\naws_access_key_id = A2\n",
        )
        .unwrap();
        let path: &'static str = Box::leak(file.to_str().unwrap().to_string().into_boxed_str());
        let from_file = |profile| {
            credentials(profile, move |n: &str| (n == "AWS_SHARED_CREDENTIALS_FILE").then(|| path.to_string()))
        };
        assert_eq!(from_file(None).unwrap().access_key_id(), "A1");
        let e = from_file(Some("ci")).unwrap_err();
        assert!(matches!(e, SignError::IncompleteProfile { .. }), "{e:?}");
        assert!(e.to_string().contains("lacks aws_access_key_id or aws_secret_access_key"), "{e}");
        let e = from_file(Some("nope")).unwrap_err();
        assert!(matches!(&e, SignError::NoCredentials { profile, .. } if profile == "nope"), "{e:?}");
        let e = e.to_string();
        assert!(e.contains("[nope]") && !e.contains("S1"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn signing_adds_the_authorization_header() {
        let signer =
            Signer::with_keys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1", "sagemaker");
        let mut req = http::Request::builder()
            .method("POST")
            .uri("https://edge.example.com/SendHeartbeat")
            .header("host", "edge.example.com")
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        signer.sign(&mut req, b"{}", at).unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sagemaker/aws4_request"),
            "{auth}"
        );
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date"), "{auth}");
        assert_eq!(req.headers()["x-amz-date"], "20150830T123600Z");
        assert!(!format!("{signer:?}").contains("wJalr"), "no secret in Debug");
    }
}
