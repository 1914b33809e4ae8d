//! A throw-away certificate authority.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;

/// A certificate authority (ECDSA P-256) that issues server certificates for tests.
///
/// ```no_run
/// let ca = connectors_testkit::TestCa::new();
/// let (cert_pem, key_pem) = ca.issue_server_cert(&["localhost", "127.0.0.1"]);
/// # let _ = (cert_pem, key_pem);
/// ```
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// The SANs used for registry certificates by [`TestCa::issue_registry_cert`] and
    /// [`crate::RegistryBuilder::tls`].
    pub const REGISTRY_SANS: &'static [&'static str] = &[
        "localhost",
        "registry.test",
        "*.registry.test",
        "127.0.0.1",
        "::1",
        // The node tier's address for pods (scripts/cluster-node.sh NODE_IP), where its registry listens.
        "10.250.0.1",
    ];

    /// A new CA with a fresh key, CN "connectors-testkit CA".
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("generate CA key (rcgen/ring)");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "connectors-testkit CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA certificate");
        let cert_pem = cert.pem();
        let cert_der = cert.der().clone();
        TestCa {
            issuer: Issuer::new(params, key),
            cert_pem,
            cert_der,
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER (e.g. for a rustls `RootCertStore`).
    pub fn ca_cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// Writes `dir/ca.crt` (creating `dir`), the layout `skopeo --cert-dir` / `--dest-cert-dir`
    /// and `/etc/containers/certs.d/<host>/` expect. Returns `dir`.
    pub fn write_cert_dir(&self, dir: impl AsRef<Path>) -> PathBuf {
        let dir = dir.as_ref().to_path_buf();
        crate::util::write_file(&dir.join("ca.crt"), &self.cert_pem);
        dir
    }

    /// Writes the CA certificate (PEM) to `path` (e.g. for `SSL_CERT_FILE`). Returns `path`.
    pub fn write_ca_file(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref().to_path_buf();
        crate::util::write_file(&path, &self.cert_pem);
        path
    }

    /// Issues a server certificate (ECDSA P-256, EKU serverAuth) for `sans` (DNS names,
    /// wildcards like `*.registry.test`, or IP addresses). The first SAN is also the CN.
    /// Returns `(cert_pem, key_pem)` (key as PKCS#8).
    pub fn issue_server_cert(&self, sans: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("generate server key (rcgen/ring)");
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap_or_else(|e| panic!("invalid SANs {sans:?}: {e}"));
        params.distinguished_name.push(
            DnType::CommonName,
            sans.first().copied().unwrap_or("connectors-testkit server"),
        );
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign server certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// [`TestCa::issue_server_cert`] with [`TestCa::REGISTRY_SANS`].
    pub fn issue_registry_cert(&self) -> (String, String) {
        self.issue_server_cert(Self::REGISTRY_SANS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_pem() {
        let ca = TestCa::new();
        assert!(ca.ca_cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let (cert, key) = ca.issue_registry_cert();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let dir = tempfile::tempdir().unwrap();
        let d = ca.write_cert_dir(dir.path().join("certs"));
        assert_eq!(
            std::fs::read_to_string(d.join("ca.crt")).unwrap(),
            ca.ca_cert_pem()
        );
    }
}
