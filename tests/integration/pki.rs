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
        for (file, text) in [
            ("ca.pem", ca.pem()),
            ("other-ca.pem", other.pem()),
            ("server.pem", server.0),
            ("server.key", server.1),
            ("client.pem", client.0),
            ("client.key", client.1),
        ] {
            dir.write(file, &text);
        }
        Pki { dir }
    }

    /// The path of one of the files, as a string.
    pub fn path(&self, file: &str) -> String {
        self.dir.path(file).to_str().unwrap().to_string()
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
