#![forbid(unsafe_code)]
//! Dev-only fixtures for the project's end-to-end tests.
//!
//! Everything here starts or builds **real** things on this machine and binds `127.0.0.1` only:
//!
//! * [`Registry`] — a CNCF Distribution `docker-registry` (no auth, htpasswd, token auth, TLS);
//! * [`GgcrRegistry`] — go-containerregistry's registry (`crane registry serve`), a second implementation;
//! * [`peers`] — test peers built from Go modules, and the runner of `docs/<client>.md` command blocks;
//! * [`TokenServer`] — a Distribution token-auth server (ES256 JWTs the registry accepts);
//! * [`TestCa`] — a throw-away certificate authority issuing server certificates;
//! * [`Cluster`] — a real Kubernetes control plane (`scripts/cluster.sh`), built from Go modules;
//! * [`OciLayout`] — deterministic OCI image layouts usable as `oci:<path>:<tag>`;
//! * [`Skopeo`] — runs `skopeo` with an isolated blob-info cache and configuration;
//! * [`AuthFile`] — a containers `auth.json`;
//! * [`http`] — a tiny HTTP/1.1 client (plain TCP) for hand-written requests;
//! * [`free_port`], [`ensure_hosts_entry`].
//!
//! Child processes are killed (and reaped) when their owner is dropped. Setup failures panic
//! with a message saying what to install or fix.

mod auth;
mod ca;
mod cluster;
mod ggcr;
pub mod http;
mod oci;
pub mod peers;
mod registry;
mod skopeo;
mod token;
mod util;

pub use auth::AuthFile;
pub use ca::TestCa;
pub use cluster::{Cluster, KubectlOutput, processes_using};
pub use ggcr::GgcrRegistry;
pub use oci::{ImageInfo, OciLayout, PseudoRandom, sha256_digest};
pub use registry::{Registry, RegistryBuilder};
pub use skopeo::{Output, Skopeo, assert_success};
pub use token::{Access, TokenRequest, TokenServer, TokenServerBuilder};

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago (bind `:0`, read the port, close).
///
/// Another process may grab it before you bind it; fixtures in this crate retry on bind
/// failure.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .expect("cannot bind 127.0.0.1:0 — is the loopback interface up?");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}

/// Makes sure `/etc/hosts` maps `name` to `127.0.0.1` (appends `127.0.0.1 name` if no line
/// does yet). Idempotent. Lets tests use a *name* for loopback (Go clients never proxy
/// loopback addresses; see TESTGROUND G1) without any DNS query leaving the machine.
///
/// Returns an error text if `/etc/hosts` cannot be read or written (e.g. not root).
pub fn ensure_hosts_entry(name: &str) -> Result<(), String> {
    ensure_hosts_entry_in(std::path::Path::new("/etc/hosts"), name)
}

/// Like [`ensure_hosts_entry`], for an address of this machine other than 127.0.0.1 (the node tier's
/// `10.250.0.1`, which pods reach too).
pub fn ensure_hosts_entry_for(ip: std::net::IpAddr, name: &str) -> Result<(), String> {
    ensure_hosts_entry_at(std::path::Path::new("/etc/hosts"), &ip.to_string(), name)
}

pub(crate) fn ensure_hosts_entry_in(path: &std::path::Path, name: &str) -> Result<(), String> {
    ensure_hosts_entry_at(path, "127.0.0.1", name)
}

fn ensure_hosts_entry_at(path: &std::path::Path, ip: &str, name: &str) -> Result<(), String> {
    use std::io::Write;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(format!("invalid host name {name:?}"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let present = text.lines().any(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        fields.next() == Some(ip) && fields.any(|h| h.eq_ignore_ascii_case(name))
    });
    if present {
        return Ok(());
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot write {} ({e}); run the tests as root or add the line `{ip} {name}` by hand",
                path.display()
            )
        })?;
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(file, "{sep}{ip} {name}")
        .map_err(|e| format!("cannot append to {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).expect("port from free_port() should be bindable");
    }

    #[test]
    fn hosts_entry_is_idempotent_on_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 vm # comment").unwrap();
        ensure_hosts_entry_in(&hosts, "vm").unwrap();
        assert!(
            !std::fs::read_to_string(&hosts)
                .unwrap()
                .contains("127.0.0.1 vm\n")
        );
        ensure_hosts_entry_in(&hosts, "registry.test").unwrap();
        ensure_hosts_entry_in(&hosts, "registry.test").unwrap();
        let text = std::fs::read_to_string(&hosts).unwrap();
        assert_eq!(
            text,
            "127.0.0.1 localhost\n127.0.0.1 vm # comment\n127.0.0.1 registry.test\n"
        );
        assert!(ensure_hosts_entry_in(&hosts, "bad name").is_err());
    }
}
