//! A real CNCF Distribution registry (`docker-registry serve`), on 127.0.0.1 unless told another address.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::{require_tool, tail_file, write_file, yaml_str};
use crate::{TestCa, TokenServer};

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const BIND_ATTEMPTS: usize = 8;
const HTPASSWD_REALM: &str = "testkit-realm";

#[derive(Clone, Debug)]
struct TokenAuth {
    realm: String,
    service: String,
    issuer: String,
    cert_pem: String,
}

#[derive(Clone, Debug)]
struct Tls {
    cert_pem: String,
    key_pem: String,
    ca_der: rustls_pki_types::CertificateDer<'static>,
}

/// Builder for [`Registry`]. No auth and plain HTTP by default.
#[derive(Clone, Debug, Default)]
pub struct RegistryBuilder {
    htpasswd: Vec<(String, String)>,
    token: Option<TokenAuth>,
    tls: Option<Tls>,
    binary: Option<PathBuf>,
    ip: Option<std::net::IpAddr>,
}

impl RegistryBuilder {
    /// No auth, plain HTTP.
    pub fn new() -> Self {
        Self::default()
    }

    /// Basic auth with an htpasswd file (bcrypt, written with `htpasswd -Bbn`). Call again to
    /// add more users. Cannot be combined with [`RegistryBuilder::token`].
    pub fn htpasswd(mut self, user: &str, password: &str) -> Self {
        self.htpasswd.push((user.into(), password.into()));
        self
    }

    /// Token auth against `server` (realm, service, issuer and its signing certificate as
    /// `rootcertbundle`). The token server must keep running while the registry is used.
    pub fn token(mut self, server: &TokenServer) -> Self {
        self.token = Some(TokenAuth {
            realm: server.realm(),
            service: server.service(),
            issuer: server.issuer(),
            cert_pem: server.cert_pem(),
        });
        self
    }

    /// Serves HTTPS with a leaf from `ca` for [`TestCa::REGISTRY_SANS`] (localhost,
    /// registry.test, *.registry.test, 127.0.0.1, ::1, and the node tier's 10.250.0.1).
    pub fn tls(mut self, ca: &TestCa) -> Self {
        let (cert_pem, key_pem) = ca.issue_registry_cert();
        self.tls = Some(Tls {
            cert_pem,
            key_pem,
            ca_der: ca.ca_cert_der(),
        });
        self
    }

    /// Runs another Distribution-compatible binary (`<binary> serve <config.yml>`, same config format)
    /// instead of Debian's `docker-registry` 2.8, e.g. distribution v3's `registry` built by
    /// `testground/distribution/build.sh`.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Listens on `ip` instead of 127.0.0.1 (the node tier: the node's address pods reach).
    pub fn bind_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Starts the registry and waits until it answers `GET /v2/` (10 s, then panics with the
    /// log's tail).
    pub fn start(self) -> Registry {
        assert!(
            self.htpasswd.is_empty() || self.token.is_none(),
            "a registry can use htpasswd or token auth, not both"
        );
        let bin = self.binary.clone().unwrap_or_else(|| {
            require_tool(
                "docker-registry",
                "apt-get install docker-registry (CNCF Distribution 2.8)",
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("testkit-registry-")
            .tempdir()
            .expect("create registry tempdir");
        let root = dir.path();
        let ip = self.ip.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let data_dir = root.join("data");
        std::fs::create_dir_all(&data_dir).expect("create registry data dir");

        let mut auth = String::new();
        if !self.htpasswd.is_empty() {
            let htpasswd_bin = require_tool(
                "htpasswd",
                "apt-get install apache2-utils (for bcrypt htpasswd)",
            );
            let mut file = String::new();
            for (user, password) in &self.htpasswd {
                let out = Command::new(&htpasswd_bin)
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("run htpasswd -Bbn");
                assert!(
                    out.status.success(),
                    "htpasswd -Bbn {user} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let line = String::from_utf8(out.stdout).expect("htpasswd output is UTF-8");
                file.push_str(line.trim_end());
                file.push('\n');
            }
            let path = root.join("auth").join("htpasswd");
            write_file(&path, file);
            auth = format!(
                "auth:\n  htpasswd:\n    realm: {}\n    path: {}\n",
                yaml_str(HTPASSWD_REALM),
                yaml_str(&path.to_string_lossy())
            );
        }
        if let Some(t) = &self.token {
            let path = root.join("auth").join("token-rootcertbundle.pem");
            write_file(&path, &t.cert_pem);
            auth = format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                yaml_str(&t.realm),
                yaml_str(&t.service),
                yaml_str(&t.issuer),
                yaml_str(&path.to_string_lossy())
            );
        }
        let mut tls = String::new();
        if let Some(t) = &self.tls {
            let cert = root.join("tls").join("server.crt");
            let key = root.join("tls").join("server.key");
            write_file(&cert, &t.cert_pem);
            write_file(&key, &t.key_pem);
            tls = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                yaml_str(&cert.to_string_lossy()),
                yaml_str(&key.to_string_lossy())
            );
        }

        let mut reg = Registry {
            bin,
            config_path: root.join("config.yml"),
            log_path: root.join("registry.log"),
            data_dir,
            template: ConfigTemplate { auth, tls },
            tls: self.tls.map(|t| Arc::new(t.ca_der)),
            addr: SocketAddr::new(ip, 0),
            child: None,
            _dir: dir,
        };
        let mut last_log = String::new();
        for _ in 0..BIND_ATTEMPTS {
            reg.addr = SocketAddr::new(ip, crate::free_port());
            match reg.spawn_and_wait() {
                Ok(()) => return reg,
                Err(SpawnError::AddrInUse(log)) => last_log = log,
            }
        }
        panic!(
            "docker-registry could not bind a free port after {BIND_ATTEMPTS} attempts; last log:\n{last_log}"
        );
    }
}

#[derive(Debug)]
struct ConfigTemplate {
    auth: String,
    tls: String,
}

enum SpawnError {
    AddrInUse(String),
}

/// A running `docker-registry serve` on 127.0.0.1, with its config, storage and log in a
/// temporary directory. Killed (and reaped) on drop.
#[derive(Debug)]
pub struct Registry {
    bin: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    data_dir: PathBuf,
    template: ConfigTemplate,
    tls: Option<Arc<rustls_pki_types::CertificateDer<'static>>>,
    addr: SocketAddr,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// A no-auth, plain-HTTP registry (`RegistryBuilder::new().start()`).
    pub fn start() -> Registry {
        RegistryBuilder::new().start()
    }

    /// A builder; see [`RegistryBuilder`].
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::new()
    }

    /// 127.0.0.1:PORT
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `"127.0.0.1:PORT"` (for `docker://127.0.0.1:PORT/repo:tag`).
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The registry's log so far (stdout and stderr; access log included).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The storage root (`storage.filesystem.rootdirectory`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The config file in use.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Whether the process is (still) running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A password rotation: replaces the htpasswd file with one user (`user`/`password`, bcrypt) and restarts
    /// the registry on the same port so that it reads it. Panics for a registry without htpasswd auth.
    pub fn set_htpasswd(&mut self, user: &str, password: &str) {
        let path = self._dir.path().join("auth").join("htpasswd");
        assert!(
            path.exists(),
            "set_htpasswd: this registry does not use htpasswd auth"
        );
        let htpasswd_bin = require_tool(
            "htpasswd",
            "apt-get install apache2-utils (for bcrypt htpasswd)",
        );
        let out = Command::new(&htpasswd_bin)
            .args(["-Bbn", user, password])
            .output()
            .expect("run htpasswd -Bbn");
        assert!(out.status.success(), "htpasswd -Bbn {user} failed");
        write_file(
            &path,
            String::from_utf8_lossy(&out.stdout).trim_end().to_owned() + "\n",
        );
        self.restart();
    }

    /// Kills the registry and waits for it to exit; the port then refuses connections.
    /// Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the registry again on the same port, config and storage (after
    /// [`Registry::stop`]; stops it first if running). Panics if the port was taken meanwhile.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(SpawnError::AddrInUse(log)) = self.spawn_and_wait() {
            panic!(
                "docker-registry cannot re-bind {} (taken meanwhile?):\n{log}",
                self.addr
            );
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    fn write_config(&self) {
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: {addr}\n  secret: connectors-testkit-not-a-secret\n{tls}\
             {auth}",
            root = yaml_str(&self.data_dir.to_string_lossy()),
            addr = self.addr,
            tls = self.template.tls,
            auth = self.template.auth,
        );
        write_file(&self.config_path, config);
    }

    fn spawn_and_wait(&mut self) -> Result<(), SpawnError> {
        self.write_config();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open registry log");
        let log_err = log.try_clone().expect("clone log handle");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg(&self.config_path)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self._dir.path())
            .current_dir(self._dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (apt-get install docker-registry)",
                self.bin.display()
            )
        });
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let text = self.log();
                let this_run = text.get(log_start as usize..).unwrap_or(&text).to_owned();
                if this_run.contains("address already in use") {
                    return Err(SpawnError::AddrInUse(this_run));
                }
                panic!(
                    "docker-registry exited at startup ({status}); config {}:\n{}\n--- log tail ---\n{}",
                    self.config_path.display(),
                    std::fs::read_to_string(&self.config_path).unwrap_or_default(),
                    crate::util::tail(&this_run, 40)
                );
            }
            let probe = self.probe();
            let Err(last_err) = probe else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                self.stop();
                panic!(
                    "docker-registry on {} not ready after {READY_TIMEOUT:?} (last probe: {last_err}); log tail:\n{}",
                    self.addr,
                    tail_file(&self.log_path, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// TCP connect + `GET /v2/`; any HTTP status means ready.
    fn probe(&self) -> Result<(), String> {
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500))
            .map_err(|e| format!("connect: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(2))).ok();
        tcp.set_write_timeout(Some(Duration::from_secs(2))).ok();
        let request = format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: connectors-testkit\r\n\r\n",
            self.addr
        );
        let mut head = [0u8; 12];
        match &self.tls {
            None => {
                let mut tcp = tcp;
                tcp.write_all(request.as_bytes())
                    .map_err(|e| format!("write: {e}"))?;
                tcp.read_exact(&mut head)
                    .map_err(|e| format!("read: {e}"))?;
            }
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add((**ca).clone())
                    .map_err(|e| format!("CA cert: {e}"))?;
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("rustls: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                let name = rustls_pki_types::ServerName::IpAddress(self.addr.ip().into());
                let conn = rustls::ClientConnection::new(Arc::new(config), name)
                    .map_err(|e| format!("TLS: {e}"))?;
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                stream
                    .write_all(request.as_bytes())
                    .map_err(|e| format!("TLS write: {e}"))?;
                stream
                    .read_exact(&mut head)
                    .map_err(|e| format!("TLS read: {e}"))?;
            }
        }
        if head.starts_with(b"HTTP/1.") {
            Ok(())
        } else {
            Err(format!(
                "not an HTTP response: {:?}",
                String::from_utf8_lossy(&head)
            ))
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
