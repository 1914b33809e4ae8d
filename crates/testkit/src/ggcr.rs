//! go-containerregistry's registry (`crane registry serve`): a second registry implementation, plain HTTP
//! and no auth, 127.0.0.1 only. Built by `testground/crane/build.sh`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `crane registry serve --address 127.0.0.1:PORT --disk DIR`. Killed (and reaped) on drop.
#[derive(Debug)]
pub struct GgcrRegistry {
    child: Child,
    addr: SocketAddr,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl GgcrRegistry {
    /// Starts `crane registry serve` with `crane` (a path) and waits until it answers `GET /v2/`.
    pub fn start(crane: &Path) -> GgcrRegistry {
        let dir = tempfile::Builder::new()
            .prefix("testkit-ggcr-")
            .tempdir()
            .expect("create ggcr registry tempdir");
        let log_path = dir.path().join("registry.log");
        // crane does not create the --disk folder (every upload then fails with 500)
        std::fs::create_dir_all(dir.path().join("blobs")).expect("create the ggcr blob folder");
        let mut last = String::new();
        for _ in 0..8 {
            let addr = SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
            let log = std::fs::File::create(&log_path).expect("create ggcr log");
            let log_err = log.try_clone().expect("clone log handle");
            let mut child = Command::new(crane)
                .args([
                    "registry",
                    "serve",
                    "--address",
                    &addr.to_string(),
                    "--disk",
                ])
                .arg(dir.path().join("blobs"))
                .env_clear()
                .env("HOME", dir.path())
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", crane.display()));
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!(
                        "exited ({status}): {}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                    break;
                }
                if probe(addr) {
                    return GgcrRegistry {
                        child,
                        addr,
                        log_path,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("crane registry serve on {addr} not ready after {READY_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("crane registry serve did not start: {last}");
    }

    /// 127.0.0.1:PORT
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `"127.0.0.1:PORT"`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it logged (one line per request).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

fn probe(addr: SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let request = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: connectors-testkit\r\n\r\n"
    );
    let mut head = [0u8; 12];
    tcp.write_all(request.as_bytes()).is_ok()
        && tcp.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.")
}

impl Drop for GgcrRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
