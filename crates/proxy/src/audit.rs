//! The audit log: one JSON object per line for every registry operation (pull, push, delete, list,
//! ping, intercept), written when the response ends. It says who did what to which repository and how
//! it ended; it never holds a token, a password or a header.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// One audit record. Field names are stable: tooling may rely on them.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// When the response ended, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// `reverse` or `forward`.
    pub mode: &'static str,
    /// The proxy token's subject (empty when the caller was not authenticated).
    pub principal: &'a str,
    /// The pod the token was issued to, when the authenticator says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<&'a str>,
    /// `namespace/name` of the connector (forward mode before a connector is chosen: the names given).
    pub connector: &'a str,
    pub repository: &'a str,
    /// The tag or digest of a manifest, the digest of a blob (or of a finished upload).
    pub reference: &'a str,
    /// pull, push, delete, list, ping, intercept, upload_status, other.
    pub operation: &'static str,
    pub method: &'a str,
    pub status: u16,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    /// Whether the response body was sent in full.
    pub complete: bool,
    pub duration_ms: u64,
}

/// Where audit records go. Writes are serialised; each record is one `write` of one line.
pub struct AuditLog {
    out: Mutex<Box<dyn Write + Send>>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open the audit log {path}: {source}; pass --audit-log with a writable file, or - for stdout"
)]
pub struct AuditOpenError {
    path: String,
    source: std::io::Error,
}

impl AuditLog {
    /// Appends to `path` (created with mode 0600), or writes to stdout for `-`.
    pub fn open(path: &Path) -> Result<Self, AuditOpenError> {
        if path == Path::new("-") {
            return Ok(Self::to_writer(std::io::stdout()));
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(|source| AuditOpenError {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self::to_writer(file))
    }

    pub fn to_writer(out: impl Write + Send + 'static) -> Self {
        Self {
            out: Mutex::new(Box::new(out)),
        }
    }

    pub fn write(&self, record: &AuditRecord<'_>) {
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode an audit record");
                return;
            }
        };
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }
}

/// `SystemTime` as RFC 3339 UTC with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_appended_one_json_line_per_record_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "earlier\n").expect("seed");
        let log = AuditLog::open(&path).expect("open");
        let record = AuditRecord {
            time: timestamp(SystemTime::UNIX_EPOCH),
            mode: "reverse",
            principal: "p",
            pod: None,
            connector: "team-a/r",
            repository: "app",
            reference: "v1",
            operation: "pull",
            method: "GET",
            status: 200,
            bytes_in: 0,
            bytes_out: 3,
            complete: true,
            duration_ms: 1,
        };
        log.write(&record);
        log.write(&record);
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "earlier");
        let v: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["operation"], "pull");
        assert!(v.get("pod").is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir2 = tempfile::tempdir().expect("tempdir");
            let fresh = dir2.path().join("new.log");
            AuditLog::open(&fresh).expect("create");
            let mode = std::fs::metadata(&fresh)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn an_unwritable_path_says_which_flag_to_fix() {
        let err = AuditLog::open(Path::new("/nonexistent-dir/audit.log"))
            .err()
            .expect("must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent-dir/audit.log") && msg.contains("--audit-log"),
            "{msg}"
        );
    }
}
