//! Writes a volume's files atomically, in the layout of the Kubernetes AtomicWriter (used for Secret and
//! ConfigMap volumes):
//!
//! ```text
//! <target>/..2025_01_02_15_04_05.123456789/   the files of one publish (folder 0555, files 0444)
//! <target>/..data -> ..2025_01_02_15_04_05.123456789
//! <target>/config.json -> ..data/config.json
//! <target>/.env -> ..data/.env
//! ```
//!
//! A publish writes a fresh timestamped folder, then swaps `..data` to it with one `rename` of a symlink; the
//! visible names go through `..data`, so a reader sees either all old or all new files and never a missing or
//! half-written one. Names starting with `..` are the writer's own, which is why file names may not.
//! Blocking I/O: call it from `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};

use crate::CsiError;

/// The symlink that points at the current timestamped folder.
pub const DATA_LINK: &str = "..data";
const DATA_LINK_TMP: &str = "..data_tmp";
/// Prefix of the temporary symlinks that replace a visible name.
const LINK_TMP_PREFIX: &str = "..link_tmp.";
const FILE_MODE: u32 = 0o444;
const DIR_MODE: u32 = 0o555;
/// Leaves room for the temporary-link prefix within the usual 255-byte name limit.
const MAX_NAME_LEN: usize = 200;

/// Why a rendered file name cannot be written, or `Ok`.
pub fn check_file_name(name: &str) -> Result<(), String> {
    let problem = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "it is `.` or `..`"
    } else if name.starts_with("..") {
        "names starting with `..` are reserved for the driver's own files"
    } else if name.contains('/') || name.contains('\0') {
        "it contains `/` or a NUL character"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 200 bytes"
    } else {
        return Ok(());
    };
    Err(format!("file name {name:?} cannot be mounted: {problem}"))
}

/// Writes `files` into `target` (which must exist) and makes them the visible set, removing what an earlier
/// write left that is not in `files`.
pub fn write_files(target: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), CsiError> {
    for name in files.keys() {
        check_file_name(name).map_err(CsiError::FailedPrecondition)?;
    }

    // 1. A fresh folder with every file.
    let (dir_name, dir) = create_fresh_dir(target)?;
    if let Err(err) = fill_dir(&dir, files) {
        let _ = remove_tree(&dir);
        return Err(err);
    }

    // 2. The swap: a temporary symlink renamed over `..data`.
    let tmp = target.join(DATA_LINK_TMP);
    remove_if_exists(&tmp)?;
    symlink(&dir_name, &tmp).map_err(|e| CsiError::io("create the symlink", &tmp, e))?;
    let data = target.join(DATA_LINK);
    if let Err(e) = fs::rename(&tmp, &data) {
        let _ = fs::remove_file(&tmp);
        let _ = remove_tree(&dir);
        return Err(CsiError::io("switch the symlink", &data, e));
    }

    // 3. Visible names -> ..data/<name>, created or corrected one rename at a time.
    for name in files.keys() {
        let link = target.join(name);
        let want = Path::new(DATA_LINK).join(name);
        if fs::read_link(&link).is_ok_and(|current| current == want) {
            continue;
        }
        let tmp = target.join(format!("{LINK_TMP_PREFIX}{name}"));
        remove_if_exists(&tmp)?;
        symlink(&want, &tmp).map_err(|e| CsiError::io("create the symlink", &tmp, e))?;
        if let Ok(meta) = fs::symlink_metadata(&link)
            && meta.is_dir()
        {
            // `rename` cannot replace a folder; something foreign is in the way.
            remove_tree(&link).map_err(|e| CsiError::io("remove", &link, e))?;
        }
        fs::rename(&tmp, &link).map_err(|e| CsiError::io("create the symlink", &link, e))?;
    }

    // 4. Clean up: links to files no longer written, older folders, temporaries of an interrupted write.
    for entry in fs::read_dir(target).map_err(|e| CsiError::io("list", target, e))? {
        let entry = entry.map_err(|e| CsiError::io("list", target, e))?;
        let name = entry.file_name();
        let path = entry.path();
        let Some(name) = name.to_str() else { continue };
        let stale = if name.starts_with("..") {
            name != DATA_LINK && name != dir_name
        } else {
            is_our_link(&path) && !files.contains_key(name)
        };
        if stale {
            remove_tree(&path).map_err(|e| CsiError::io("remove", &path, e))?;
        }
    }
    Ok(())
}

/// Removes everything [`write_files`] made in `target`, then `target` itself. Returns `false` (and leaves the
/// folder) when something else is in it.
pub fn remove_all(target: &Path) -> Result<bool, CsiError> {
    let entries = match fs::read_dir(target) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(CsiError::io("list", target, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| CsiError::io("list", target, e))?;
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(".."))
            || is_our_link(&path);
        if ours {
            remove_tree(&path).map_err(|e| CsiError::io("remove", &path, e))?;
        }
    }
    match fs::remove_dir(target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(false),
        Err(e) => Err(CsiError::io("remove", target, e)),
    }
}

/// A symlink into `..data/`: a visible name this writer made.
fn is_our_link(path: &Path) -> bool {
    fs::read_link(path).is_ok_and(|to| to.starts_with(DATA_LINK))
}

fn create_fresh_dir(target: &Path) -> Result<(String, PathBuf), CsiError> {
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.nanosecond()
    );
    for attempt in 0u32..100 {
        let name = if attempt == 0 {
            stamp.clone()
        } else {
            format!("{stamp}.{attempt}")
        };
        let dir = target.join(&name);
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok((name, dir)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(CsiError::io("create the folder", &dir, e)),
        }
    }
    Err(CsiError::Internal(format!(
        "cannot find a free folder name in {}",
        target.display()
    )))
}

fn fill_dir(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), CsiError> {
    for (name, content) in files {
        let path = dir.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| CsiError::io("create", &path, e))?;
        file.write_all(content)
            .map_err(|e| CsiError::io("write", &path, e))?;
        // The umask may have removed bits; the mode is the contract (`-r--r--r--`).
        fs::set_permissions(&path, Permissions::from_mode(FILE_MODE))
            .map_err(|e| CsiError::io("set the mode of", &path, e))?;
    }
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
        .map_err(|e| CsiError::io("set the mode of", dir, e))
}

fn remove_if_exists(path: &Path) -> Result<(), CsiError> {
    match fs::symlink_metadata(path) {
        Ok(_) => remove_tree(path).map_err(|e| CsiError::io("remove", path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CsiError::io("inspect", path, e)),
    }
}

/// Removes a file, a symlink (not what it points to) or a folder with its contents, making read-only folders
/// writable first so that this works without root too.
fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    fs::set_permissions(path, Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(path)? {
        remove_tree(&entry?.path())?;
    }
    fs::remove_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_swaps_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path();
        write_files(target, &files(&[("a", "1"), (".env", "x=1"), ("b", "2")])).unwrap();
        let first = fs::read_link(target.join(DATA_LINK)).unwrap();
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(target.join(".env")).unwrap(), "x=1");
        let mode = fs::metadata(target.join("a")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o444);
        let mode = fs::metadata(target.join(&first))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o555);

        write_files(target, &files(&[("a", "3"), ("c", "4")])).unwrap();
        let second = fs::read_link(target.join(DATA_LINK)).unwrap();
        assert_ne!(first, second);
        assert!(!target.join(&first).exists(), "old folder removed");
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "3");
        let second = second.to_str().unwrap().to_owned();
        assert_eq!(names(target), [second.as_str(), "..data", "a", "c"]);

        assert!(remove_all(target).unwrap());
        assert!(!target.exists());
        // Idempotent.
        assert!(remove_all(target).unwrap());
    }

    #[test]
    fn foreign_files_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("t");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("mine"), "not the driver's").unwrap();
        write_files(&target, &files(&[("a", "1")])).unwrap();
        assert!(!remove_all(&target).unwrap());
        assert_eq!(names(&target), ["mine"]);
    }

    #[test]
    fn reserved_and_bad_names_are_refused() {
        for bad in ["", ".", "..", "..data", "..x", "a/b", "a\0b"] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        for good in [".env", "config.json", "ca.crt", ".npmrc", "a..b"] {
            assert!(check_file_name(good).is_ok(), "{good:?}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let err = write_files(tmp.path(), &files(&[("..data", "x")])).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert_eq!(names(tmp.path()), Vec::<String>::new());
    }
}
