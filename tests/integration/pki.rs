//! A throwaway PKI for the TLS tests: a CA, a server certificate for
//! `localhost` and 127.0.0.1 signed by it, a client certificate signed by
//! it, and a second, unrelated CA; written as PEM files in a directory.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use super::util::TempDir;

pub struct Pki {
    pub dir: TempDir,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = TempDir::new(name);
        let ca = authority("fleetstorm test CA");
        let other = authority("some other CA");
        let server = leaf(vec!["localhost".into(), "127.0.0.1".into()], "serve", &ca);
        let client = leaf(vec!["device-0001".into()], "device-0001", &ca);
        let expired = {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            (params.signed_by(&key, &ca).unwrap().pem(), key.serialize_pem())
        };
        for (file, text) in [
            ("ca.pem", ca.pem()),
            ("other-ca.pem", other.pem()),
            ("server.pem", server.0),
            ("server.key", server.1),
            ("client.pem", client.0),
            ("client.key", client.1),
            ("expired.pem", expired.0),
            ("expired.key", expired.1),
        ] {
            dir.write(file, &text);
        }
        Pki { dir }
    }

    /// The path of one of the files, as a string.
    pub fn path(&self, file: &str) -> String {
        self.dir.path(file).to_str().unwrap().to_string()
    }

    /// serve with a certificate that expired in 2021.
    pub fn serve_tls_expired(&self) -> fleetstorm::server::ServeTls {
        fleetstorm::server::ServeTls {
            cert: self.dir.path("expired.pem"),
            key: self.dir.path("expired.key"),
            client_ca: None,
        }
    }

    pub fn serve_tls(&self, client_ca: bool) -> fleetstorm::server::ServeTls {
        fleetstorm::server::ServeTls {
            cert: self.dir.path("server.pem"),
            key: self.dir.path("server.key"),
            client_ca: client_ca.then(|| self.dir.path("ca.pem")),
        }
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `names` signed by `ca`: (certificate PEM, key PEM).
fn leaf(names: Vec<String>, cn: &str, ca: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}
