//! The proxy's own certificate authority, and the leaf certificates it mints for intercepted hosts.
//!
//! Forward mode terminates TLS for a connector's host with a certificate signed by this CA; the CSI
//! driver mounts the CA certificate as `ca.crt` so that clients trust it without `--tls-verify=false`.
//! Leaves share one key (generated at start) so that minting is one signature; each leaf is valid for
//! a day, backdated an hour for clock skew, and cached per host for less than that.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use connectors_identity::private_file::{Created, create_once};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";

const LEAF_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const LEAF_BACKDATE: Duration = Duration::from_secs(3600);
/// Leaves are re-minted well before they expire.
const LEAF_CACHE_TTL: Duration = Duration::from_secs(12 * 3600);
const LEAF_CACHE_CAPACITY: u64 = 10_000;
const CA_LIFETIME_DAYS: i64 = 3650;
/// How long a process waits for the certificate of a CA another process is creating: 100 × 20 ms.
const CERT_WAIT_STEPS: u32 = 100;
const CERT_WAIT_STEP: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("{path}: not a usable {what}: {reason}")]
    Invalid {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{0} exists but {1} does not; restore it or remove both to create a new CA")]
    HalfPresent(PathBuf, PathBuf),
    #[error("cannot mint a certificate for {host:?}: {reason}")]
    Mint { host: String, reason: String },
    #[error("generating the CA: {0}")]
    Generate(String),
}

/// A leaf certificate's TLS configuration, and whether it was minted for this call.
#[derive(Clone)]
pub struct Leaf {
    /// Chooses the cipher suite in the proxy's order (AES-128-GCM first); pass it through
    /// [`for_client`] with the client's offer before the handshake.
    pub config: Arc<ServerConfig>,
    /// `false` when it came from the cache.
    pub minted: bool,
}

/// The proxy's order of cipher suites: AES-128-GCM, then AES-256-GCM, then the rest (ChaCha20).
///
/// AES-128-GCM is the suite every TLS 1.3 peer must implement (RFC 8446 §9.1) and the one Go's
/// crypto/tls and BoringSSL pick when the client has AES hardware; it costs the proxy and the client
/// about 10 % less CPU per byte than AES-256-GCM (bench/ANALYSIS.md).
fn suite_rank(suite: rustls::CipherSuite) -> u8 {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        s if is_aes_gcm(s) => 1,
        _ => 2,
    }
}

fn is_aes_gcm(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as S;
    matches!(
        suite,
        S::TLS13_AES_128_GCM_SHA256
            | S::TLS13_AES_256_GCM_SHA384
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    )
}

/// The leaf's configuration for a client that offered `client_suites` (in its order of preference).
///
/// A client whose first choice among the suites the proxy knows is AES-GCM has AES hardware: the
/// proxy's order decides (AES-128-GCM first). Any other client (ChaCha20 first: no AES hardware)
/// gets its own order. This is the rule of Go's crypto/tls and BoringSSL.
pub fn for_client(
    config: &Arc<ServerConfig>,
    client_suites: &[rustls::CipherSuite],
) -> Arc<ServerConfig> {
    let known = |s: &&rustls::CipherSuite| {
        config
            .crypto_provider()
            .cipher_suites
            .iter()
            .any(|k| k.suite() == **s)
    };
    match client_suites.iter().find(known) {
        Some(first) if !is_aes_gcm(*first) => {
            let mut own_order = ServerConfig::clone(config);
            own_order.ignore_client_order = false;
            Arc::new(own_order)
        }
        _ => config.clone(),
    }
}

/// The CA and the leaf-certificate cache.
pub struct ProxyCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    leaf_key: Arc<KeyPair>,
    leaves: moka::sync::Cache<String, Arc<ServerConfig>>,
}

impl std::fmt::Debug for ProxyCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCa").finish_non_exhaustive()
    }
}

impl ProxyCa {
    /// Loads `ca.crt` and `ca.key` from `dir`, or creates an ECDSA P-256 CA there (key mode 0600).
    ///
    /// Race-free: processes starting at once on an empty folder end with one CA. The key is created with
    /// [`connectors_identity::private_file::create_once`], so one of them wins; the winner then adds its
    /// certificate, and the others wait for it and load the winner's CA.
    pub fn load_or_create(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Self::load(&cert_path, &key_path),
            (false, false) => {
                create_dir_private(dir)?;
                let (cert_pem, key_pem) = generate_ca()?;
                let io = |path: &Path| {
                    let path = path.to_owned();
                    move |source| CaError::Io { path, source }
                };
                match create_once(&key_path, key_pem.as_bytes(), 0o600).map_err(io(&key_path))? {
                    Created::Written => {
                        match create_once(&cert_path, cert_pem.as_bytes(), 0o644)
                            .map_err(io(&cert_path))?
                        {
                            Created::Written => {
                                tracing::info!(cert = %cert_path.display(), "created the proxy CA");
                                Self::from_pem(&cert_pem, &key_pem, &cert_path, &key_path)
                            }
                            // a certificate without its key was there: not ours to pair
                            Created::Existed => Err(CaError::HalfPresent(cert_path, key_path)),
                        }
                    }
                    Created::Existed => Self::load_when_complete(&cert_path, &key_path),
                }
            }
            (true, false) => Err(CaError::HalfPresent(cert_path, key_path)),
            (false, true) => Self::load_when_complete(&cert_path, &key_path),
        }
    }

    /// The key is there and the certificate is not: another process is creating the CA. Waits a little
    /// for its certificate, then loads the pair (or reports half a CA).
    fn load_when_complete(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        for _ in 0..CERT_WAIT_STEPS {
            if cert_path.exists() {
                return Self::load(cert_path, key_path);
            }
            std::thread::sleep(CERT_WAIT_STEP);
        }
        Err(CaError::HalfPresent(key_path.into(), cert_path.into()))
    }

    /// Loads a CA from a certificate and key file (`--ca-cert`, `--ca-key`).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        check_key_permissions(key_path)?;
        let cert_pem = std::fs::read_to_string(cert_path).map_err(|source| CaError::Io {
            path: cert_path.into(),
            source,
        })?;
        let key_pem = std::fs::read_to_string(key_path).map_err(|source| CaError::Io {
            path: key_path.into(),
            source,
        })?;
        Self::from_pem(&cert_pem, &key_pem, cert_path, key_path)
    }

    /// A CA from PEM text (the paths only name the sources in errors).
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::Invalid {
            path: key_path.into(),
            what: "private key (PEM, PKCS#8)",
            reason: e.to_string(),
        })?;
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| CaError::Invalid {
                path: cert_path.into(),
                what: "CA certificate (PEM)",
                reason: e.to_string(),
            })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| CaError::Invalid {
            path: cert_path.into(),
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CaError::Generate(e.to_string()))?;
        Ok(ProxyCa {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            issuer,
            leaf_key: Arc::new(leaf_key),
            leaves: moka::sync::Cache::builder()
                .max_capacity(LEAF_CACHE_CAPACITY)
                .time_to_live(LEAF_CACHE_TTL)
                .build(),
        })
    }

    /// A fresh CA of the kind [`ProxyCa::load_or_create`] writes, as PEM text: the certificate and the PKCS#8
    /// private key, for callers that store it elsewhere (the proxy's Kubernetes Secret). Load it with
    /// [`ProxyCa::from_pem`].
    pub fn generate_pem() -> Result<(String, connectors_model::SecretString), CaError> {
        let (cert_pem, key_pem) = generate_ca()?;
        Ok((cert_pem, connectors_model::SecretString::new(key_pem)))
    }

    /// The CA certificate (PEM): what clients must trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A TLS server configuration presenting a leaf certificate for `host` (a DNS name or an IP
    /// address), from the cache or minted now. HTTP/1.1 only.
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        self.leaf(host).map(|leaf| leaf.config)
    }

    /// As [`ProxyCa::server_config`], saying whether the leaf was minted now (a cache miss), so that the
    /// caller can count the cache's use: the CA keeps no counters of its own.
    pub fn leaf(&self, host: &str) -> Result<Leaf, CaError> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if let Some(config) = self.leaves.get(&host) {
            return Ok(Leaf {
                config,
                minted: false,
            });
        }
        let config = Arc::new(self.mint(&host)?);
        self.leaves.insert(host, config.clone());
        Ok(Leaf {
            config,
            minted: true,
        })
    }

    fn mint(&self, host: &str) -> Result<ServerConfig, CaError> {
        let fail = |reason: String| CaError::Mint {
            host: host.to_owned(),
            reason,
        };
        let chain = vec![self.leaf_der(host)?, self.cert_der.clone()];
        let key = PrivateKeyDer::try_from(self.leaf_key.serialize_der())
            .map_err(|e| fail(e.to_string()))?;
        let mut provider = rustls::crypto::ring::default_provider();
        provider
            .cipher_suites
            .sort_by_key(|s| suite_rank(s.suite()));
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| fail(e.to_string()))?;
        config.ignore_client_order = true;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A leaf certificate for `host`, signed by the CA.
    fn leaf_der(&self, host: &str) -> Result<CertificateDer<'static>, CaError> {
        let fail = |reason: String| CaError::Mint {
            host: host.to_owned(),
            reason,
        };
        let mut params =
            CertificateParams::new(vec![host.to_owned()]).map_err(|e| fail(e.to_string()))?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = now + LEAF_LIFETIME;
        let leaf = params
            .signed_by(self.leaf_key.as_ref(), &self.issuer)
            .map_err(|e| fail(e.to_string()))?;
        Ok(leaf.der().clone())
    }
}

fn generate_ca() -> Result<(String, String), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CaError::Generate(e.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| CaError::Generate(e.to_string()))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Connectors proxy CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Connectors");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - LEAF_BACKDATE;
    params.not_after = now + time::Duration::days(CA_LIFETIME_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(|e| CaError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn create_dir_private(dir: &Path) -> Result<(), CaError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| CaError::Io {
        path: dir.into(),
        source,
    })
}

fn check_key_permissions(path: &Path) -> Result<(), CaError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| CaError::Io {
            path: path.into(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CaError::KeyPermissions {
                path: path.into(),
                mode,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reloads_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = ProxyCa::load_or_create(&state).unwrap();
        let again = ProxyCa::load_or_create(&state).unwrap();
        assert_eq!(first.cert_pem(), again.cert_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn processes_starting_at_once_on_an_empty_folder_end_with_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let pems: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let state = &state;
                    s.spawn(move || {
                        ProxyCa::load_or_create(state)
                            .expect("every starter gets the CA")
                            .cert_pem()
                            .to_owned()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(pems.iter().all(|p| p == &pems[0]), "more than one CA");
        let on_disk = std::fs::read_to_string(state.join(CA_CERT_FILE)).unwrap();
        assert_eq!(on_disk, pems[0]);
        let files = std::fs::read_dir(&state).unwrap().count();
        assert_eq!(files, 2, "temporary files were left behind");
    }

    #[test]
    fn refuses_a_readable_key_and_half_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        ProxyCa::load_or_create(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = dir.path().join(CA_KEY_FILE);
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = ProxyCa::load_or_create(dir.path()).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
            std::fs::remove_file(&key).unwrap();
            let err = ProxyCa::load_or_create(dir.path()).unwrap_err();
            assert!(matches!(err, CaError::HalfPresent(..)), "{err}");
        }
    }

    /// Shakes hands in memory between a client offering `offer` (in that order) and the leaf for
    /// registry.test chosen by [`for_client`]; returns the suite both ended with.
    fn negotiated(ca: &ProxyCa, offer: &[rustls::CipherSuite]) -> rustls::CipherSuite {
        use rustls::pki_types::ServerName;
        let mut provider = rustls::crypto::ring::default_provider();
        provider
            .cipher_suites
            .retain(|s| offer.contains(&s.suite()));
        provider
            .cipher_suites
            .sort_by_key(|s| offer.iter().position(|o| *o == s.suite()));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("registry.test").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
        let mut wire = Vec::new();
        client.write_tls(&mut wire).unwrap();
        let mut acceptor = rustls::server::Acceptor::default();
        acceptor.read_tls(&mut wire.as_slice()).unwrap();
        let accepted = acceptor.accept().unwrap().expect("a whole ClientHello");
        let leaf = ca.leaf("registry.test").unwrap();
        let config = for_client(&leaf.config, accepted.client_hello().cipher_suites());
        let mut server = accepted.into_connection(config).unwrap();
        for _ in 0..10 {
            let mut to_client = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut to_client).unwrap();
            }
            client.read_tls(&mut to_client.as_slice()).unwrap();
            client.process_new_packets().unwrap();
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            server.read_tls(&mut to_server.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                let suite = client.negotiated_cipher_suite().unwrap().suite();
                assert_eq!(
                    Some(suite),
                    server.negotiated_cipher_suite().map(|s| s.suite())
                );
                return suite;
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn aes_clients_get_aes_128_and_others_their_own_choice() {
        use rustls::CipherSuite as S;
        let dir = tempfile::tempdir().unwrap();
        let ca = ProxyCa::load_or_create(dir.path()).unwrap();
        // curl/OpenSSL's order: AES-256 first, so it has AES hardware; the proxy picks AES-128.
        let openssl = [
            S::TLS13_AES_256_GCM_SHA384,
            S::TLS13_CHACHA20_POLY1305_SHA256,
            S::TLS13_AES_128_GCM_SHA256,
        ];
        assert_eq!(negotiated(&ca, &openssl), S::TLS13_AES_128_GCM_SHA256);
        // A client without AES hardware puts ChaCha20 first and gets it.
        let chacha_first = [
            S::TLS13_CHACHA20_POLY1305_SHA256,
            S::TLS13_AES_128_GCM_SHA256,
            S::TLS13_AES_256_GCM_SHA384,
        ];
        assert_eq!(
            negotiated(&ca, &chacha_first),
            S::TLS13_CHACHA20_POLY1305_SHA256
        );
        // A client that offers only AES-256 gets it.
        assert_eq!(
            negotiated(&ca, &[S::TLS13_AES_256_GCM_SHA384]),
            S::TLS13_AES_256_GCM_SHA384
        );
        // TLS 1.2 clients are ranked the same way.
        let tls12 = [
            S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ];
        assert_eq!(
            negotiated(&ca, &tls12),
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        );
    }

    #[test]
    fn leaves_verify_against_the_ca_for_names_and_ips() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls_pki_types::{ServerName, UnixTime};
        let dir = tempfile::tempdir().unwrap();
        let ca = ProxyCa::load_or_create(dir.path()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        for host in ["registry.test", "127.0.0.1", "::1"] {
            let leaf = ca.leaf_der(host).unwrap();
            let name = ServerName::try_from(host).unwrap();
            verifier
                .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{host}: {e}"));
            let other = ServerName::try_from("other.test").unwrap();
            assert!(
                verifier
                    .verify_server_cert(&leaf, &[], &other, &[], UnixTime::now())
                    .is_err(),
                "{host}"
            );
            let config = ca.server_config(host).unwrap();
            assert!(
                Arc::ptr_eq(&config, &ca.server_config(host).unwrap()),
                "{host} not cached"
            );
        }
    }
}
