//! TLS for a target over TLS (`https://`; every protocol's), with rustls:
//! the client configuration from a target's settings (platform roots or a
//! CA file, an optional client certificate for mutual TLS) and the ALPN
//! protocols its protocol offers, read once when a run starts.
//!
//! Verification is rustls's WebPKI verifier with one rule on top, the one
//! OpenSSL-based clients (curl, Python) apply: a certificate the server
//! presents that is itself one of the `tls.ca` certificates is trusted, so
//! a self-signed server certificate works as it does with `curl --cacert`
//! (its name and validity are still checked). Every refusal carries the
//! certificate's subject and issuer, and [`explain`] turns a failed
//! handshake into one sentence a person can act on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::settings::TlsSettings;

/// What a TLS connection needs: the connector and the name to verify.
#[derive(Clone)]
pub struct TlsClient {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS settings that do not make a configuration: a file that does not
/// read, or what rustls refuses. `what` names the setting or flag.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {}: {source}", path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{what} {}: not PEM certificates: {source}", path.display())]
    NotPem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{what} {}: no certificate in the file", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("{what} {}: no usable private key: {source}", path.display())]
    NoKey {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    /// rustls refused the settings; `what` says which (`tls`, `tls.ca
    /// FILE`, `tls.cert/tls.key`...).
    #[error("{what}: {source}")]
    Refused {
        what: String,
        #[source]
        source: rustls::Error,
    },
    #[error("{what}: {source}")]
    Verifier {
        what: String,
        #[source]
        source: rustls::client::VerifierBuilderError,
    },
    #[error("tls: no trusted root certificates on this system; give tls.ca")]
    NoRoots,
    #[error("tls: {0:?} is not a server name")]
    ServerName(String),
}

impl TlsError {
    /// rustls's refusal of `what`.
    pub fn refused(what: impl Into<String>) -> impl FnOnce(rustls::Error) -> TlsError {
        let what = what.into();
        move |source| TlsError::Refused { what, source }
    }

    /// rustls's refusal to build a verifier from `what`.
    pub fn verifier(what: impl Into<String>) -> impl FnOnce(rustls::client::VerifierBuilderError) -> TlsError {
        let what = what.into();
        move |source| TlsError::Verifier { what, source }
    }
}

/// Reads PEM certificates (a chain, or CA roots); `what` names the file in errors.
pub fn read_chain(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let path_buf = || path.to_path_buf();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|source| TlsError::Unreadable { what, path: path_buf(), source })?
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::NotPem { what, path: path_buf(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what, path: path_buf() });
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::NoKey { what, path: path.to_path_buf(), source })
}

/// The client side of TLS toward `host`, as `settings` say.
pub fn client(settings: &TlsSettings, host: &str, alpn: Vec<Vec<u8>>) -> Result<TlsClient, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::refused("tls"))?;
    let builder = if settings.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnything(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        match &settings.ca {
            Some(ca) => {
                for cert in read_chain(ca, "tls.ca")? {
                    roots.add(cert).map_err(TlsError::refused(format!("tls.ca {}", ca.display())))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(TlsError::NoRoots);
                }
            }
        }
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(TlsError::verifier("tls"))?;
        let pinned = match &settings.ca {
            Some(ca) => read_chain(ca, "tls.ca")?,
            None => Vec::new(),
        };
        builder.dangerous().with_custom_certificate_verifier(Arc::new(Verifier { webpki, pinned }))
    };
    let mut config = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_chain(cert, "tls.cert")?, read_key(key, "tls.key")?)
            .map_err(TlsError::refused("tls.cert/tls.key"))?,
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn;
    let name = settings.server_name.as_deref().unwrap_or(host);
    let server_name = ServerName::try_from(name.to_string()).map_err(|_| TlsError::ServerName(name.to_string()))?;
    Ok(TlsClient { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), server_name })
}

/// rustls's WebPKI verification, plus trust in a presented certificate that
/// is one of `tls.ca`'s own (a self-signed server certificate), whose name
/// and validity are then checked here. Refusals carry the certificate's
/// names ([`Refused`]).
#[derive(Debug)]
struct Verifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    /// The `tls.ca` certificates, as given.
    pinned: Vec<CertificateDer<'static>>,
}

impl Verifier {
    /// The self-signed case: `cert` is one of `tls.ca`'s; its name and
    /// validity decide.
    fn verify_pinned(
        cert: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::CertificateError> {
        use rustls::CertificateError as E;
        let parsed = rustls::server::ParsedCertificate::try_from(cert).map_err(|_| E::BadEncoding)?;
        rustls::client::verify_server_name(&parsed, server_name).map_err(|e| match e {
            rustls::Error::InvalidCertificate(c) => c,
            _ => E::NotValidForName,
        })?;
        let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|_| E::BadEncoding)?;
        let now_s = now.as_secs() as i64;
        let validity = x509.validity();
        let at = |t: i64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.max(0) as u64));
        if now_s < validity.not_before.timestamp() {
            return Err(E::NotValidYetContext { time: now, not_before: at(validity.not_before.timestamp()) });
        }
        if now_s > validity.not_after.timestamp() {
            return Err(E::ExpiredContext { time: now, not_after: at(validity.not_after.timestamp()) });
        }
        Ok(())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = |cause: rustls::CertificateError| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                Refused::of(end_entity, cause),
            ))))
        };
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Ok(verified) => Ok(verified),
            Err(rustls::Error::InvalidCertificate(cause)) => {
                if self.pinned.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
                    Self::verify_pinned(end_entity, server_name, now).map_err(refused)?;
                    return Ok(ServerCertVerified::assertion());
                }
                Err(refused(cause))
            }
            Err(other) => Err(other),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A server certificate refused, with what a person needs to fix it: why,
/// and the certificate's subject, issuer and names.
#[derive(Debug)]
pub struct Refused {
    pub cause: rustls::CertificateError,
    pub subject: String,
    pub issuer: String,
    /// Its DNS names and IP addresses (subjectAltName).
    pub names: Vec<String>,
}

impl Refused {
    fn of(cert: &CertificateDer<'_>, cause: rustls::CertificateError) -> Refused {
        let (subject, issuer, names) = match x509_parser::parse_x509_certificate(cert.as_ref()) {
            Ok((_, x)) => {
                let names = x
                    .subject_alternative_name()
                    .ok()
                    .flatten()
                    .map(|san| {
                        san.value
                            .general_names
                            .iter()
                            .filter_map(|n| match n {
                                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                                x509_parser::extensions::GeneralName::IPAddress(ip) => ip_text(ip),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (x.subject().to_string(), x.issuer().to_string(), names)
            }
            Err(_) => ("(unreadable)".to_string(), "(unreadable)".to_string(), Vec::new()),
        };
        Refused { cause, subject, issuer, names }
    }

    /// The refusal in one sentence.
    pub fn sentence(&self) -> String {
        use rustls::CertificateError as E;
        let who = format!("the server's certificate (subject \"{}\", issuer \"{}\")", self.subject, self.issuer);
        let names = if self.names.is_empty() { "no names".to_string() } else { self.names.join(", ") };
        let when = |t: &UnixTime| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.as_secs()))
                .to_string()
        };
        match &self.cause {
            E::UnknownIssuer => format!(
                "{who} is not signed by a CA fleetstorm trusts: give the CA that signed it (or the certificate \
                 itself, if it is self-signed) as tls.ca"
            ),
            E::NotValidForName | E::NotValidForNameContext { .. } => {
                let expected = match &self.cause {
                    E::NotValidForNameContext { expected, .. } => format!(" {}", expected.to_str()),
                    _ => String::new(),
                };
                format!(
                    "{who} is not for the name fleetstorm connected to{expected}: it is for {names}; use one of \
                     those in the target URL, or set tls.server_name"
                )
            }
            E::Expired => format!("{who} has expired: renew it on the server"),
            E::ExpiredContext { not_after, .. } => {
                format!("{who} expired at {}: renew it on the server", when(not_after))
            }
            E::NotValidYet => format!("{who} is not valid yet: check the server's certificate and both clocks"),
            E::NotValidYetContext { not_before, .. } => format!(
                "{who} is not valid before {}: check the server's certificate and both clocks",
                when(not_before)
            ),
            E::Other(o) if o.to_string().contains("CaUsedAsEndEntity") => format!(
                "{who} is a CA certificate the server presents as its own: if it is self-signed, give that same \
                 certificate as tls.ca; otherwise have the server present a certificate the CA signed"
            ),
            other => format!("{who} was refused: {other:?}"),
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sentence())
    }
}

impl std::error::Error for Refused {}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).to_string()),
        _ => None,
    }
}

/// A TLS failure in one sentence a person can act on: an unknown issuer, a
/// name mismatch, an expired certificate, a CA certificate used as the
/// server's, a client certificate the server requires or refuses, no
/// shared protocol version; anything else as rustls words it.
pub fn explain(e: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    if let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) = e
        && let Some(refused) = o.0.downcast_ref::<Refused>()
    {
        return refused.sentence();
    }
    match e {
        rustls::Error::InvalidCertificate(c) => format!("the server's certificate was refused: {c:?}"),
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            "the server requires a client certificate: set tls.cert and tls.key (mutual TLS)".to_string()
        }
        rustls::Error::AlertReceived(
            a
            @ (A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::UnsupportedCertificate | A::AccessDenied),
        ) => format!(
            "the server refused the client certificate (it answered {a:?}): check that tls.cert is signed by a CA the \
             server trusts and that tls.key is its key"
        ),
        rustls::Error::AlertReceived(A::CertificateExpired) => {
            "the server refused the client certificate as expired: renew tls.cert".to_string()
        }
        rustls::Error::AlertReceived(A::ProtocolVersion) | rustls::Error::PeerIncompatible(_) => {
            format!("the server and fleetstorm share no TLS version or cipher (fleetstorm speaks TLS 1.2 and 1.3): {e}")
        }
        rustls::Error::AlertReceived(A::HandshakeFailure) => format!(
            "the server broke off the handshake (handshake_failure): it may require a client certificate (tls.cert, \
             tls.key) or share no cipher with fleetstorm: {e}"
        ),
        other => format!("TLS failed: {other}"),
    }
}

/// The rustls error inside an I/O error (a failed TLS handshake), if any.
pub fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// `insecure = true`: any certificate is accepted (signatures are still checked).
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
