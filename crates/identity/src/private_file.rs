//! Creating a file that must never be replaced once it exists (the token signing key, the proxy CA),
//! safely against another process doing the same at the same moment: the content goes to a temporary file
//! of its own first, which is then hard-linked into place. The link fails when the file appeared in the
//! meantime, so exactly one writer wins and everyone else reads the winner's file; no reader ever sees a
//! half-written file (a rename would silently replace the other process's file instead).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// What [`create_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The file is ours: it did not exist, and now holds the bytes given.
    Written,
    /// Another writer got there first; the bytes given were not written.
    Existed,
}

/// Creates `path` with `bytes` and permission `mode` (unix) unless it exists, race-free (module docs).
pub fn create_once(path: &Path, bytes: &[u8], mode: u32) -> io::Result<Created> {
    let tmp = temporary_name(path);
    write_new(&tmp, bytes, mode)?;
    let linked = fs::hard_link(&tmp, path);
    if let Err(err) = fs::remove_file(&tmp) {
        tracing::warn!(path = %tmp.display(), error = %err, "could not remove a temporary file");
    }
    match linked {
        Ok(()) => {
            sync_parent(path);
            Ok(Created::Written)
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(Created::Existed),
        Err(err) => Err(err),
    }
}

/// `.<name>.tmp-<pid>-<nanos>-<n>` next to `path`: unique across processes and threads.
fn temporary_name(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    path.with_file_name(format!(
        ".{name}.tmp-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if written.is_err() {
        // Best effort: the caller reports the write error, which matters more than a leftover file.
        let _ = fs::remove_file(path);
    }
    written
}

/// Makes the new directory entry durable, so a crash right after start-up does not lose a key that was
/// already used. Best effort: not every platform can open a directory.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent()
        && let Err(err) = File::open(dir).and_then(|dir| dir.sync_all())
    {
        tracing::debug!(path = %dir.display(), error = %err, "could not sync the folder");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_wins_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let results: Vec<(u8, Created)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || (i, create_once(path, &[i; 64], 0o600).unwrap()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<u8> = results
            .iter()
            .filter(|(_, c)| *c == Created::Written)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        assert_eq!(fs::read(&path).unwrap(), vec![winners[0]; 64]);
        let entries = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1, "temporary files were left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
