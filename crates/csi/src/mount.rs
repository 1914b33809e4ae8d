//! The tmpfs under a volume's target path, through the mount syscalls of `rustix` (safe bindings: the crate keeps
//! `forbid(unsafe_code)` and spawns no `mount`/`umount`).
//!
//! Nothing here lists the mounts: whether a path is a mount point comes from `statx` (`STATX_ATTR_MOUNT_ROOT`,
//! Linux 5.8; on older kernels, a device number that differs from the parent folder's), and what is mounted from
//! `statfs`. So `/proc/self/mountinfo` is not read at all.

use std::io;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, StatxAttributes, StatxFlags};
use rustix::mount::{MountFlags, UnmountFlags};

/// tmpfs options: small (the files are a few KiB) and world-readable, so any container user can read them.
const TMPFS_OPTIONS: &std::ffi::CStr = c"size=4m,mode=0755";

/// `statfs`'s `f_type` of a tmpfs (statfs(2), `linux/magic.h`).
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// A file system, as `statfs` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSystem {
    /// `statfs`'s `f_type`.
    pub magic: u64,
}

impl FileSystem {
    pub fn is_tmpfs(self) -> bool {
        self.magic == TMPFS_MAGIC
    }

    /// A name for the common ones (logs, benchmarks), else the magic number in hex.
    pub fn name(self) -> String {
        match self.magic {
            TMPFS_MAGIC => "tmpfs".to_owned(),
            0xef53 => "ext4".to_owned(),
            0x5846_5342 => "xfs".to_owned(),
            0x9123_683e => "btrfs".to_owned(),
            0x794c_7630 => "overlay".to_owned(),
            other => format!("{other:#x}"),
        }
    }
}

/// Whether the process runs with effective uid 0.
pub(crate) fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The file system `path` lives on.
pub fn file_system(path: &Path) -> io::Result<FileSystem> {
    let stat = rustix::fs::statfs(path)?;
    // f_type is signed on some targets; the magic numbers are 32-bit patterns.
    Ok(FileSystem {
        magic: u64::from(stat.f_type as u32),
    })
}

/// The file system mounted at `path` itself, or `None` when `path` is not a mount point (the top-most mount when
/// several are stacked). `path` should be canonical.
pub fn mounted_at(path: &Path) -> io::Result<Option<FileSystem>> {
    if !is_mount_point(path)? {
        return Ok(None);
    }
    file_system(path).map(Some)
}

fn is_mount_point(path: &Path) -> io::Result<bool> {
    let flags = AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW;
    let stat = rustix::fs::statx(CWD, path, flags, StatxFlags::BASIC_STATS)?;
    if stat
        .stx_attributes_mask
        .contains(StatxAttributes::MOUNT_ROOT)
    {
        return Ok(stat.stx_attributes.contains(StatxAttributes::MOUNT_ROOT));
    }
    // A kernel older than 5.8: a mount point is on another device than its parent (a bind mount of the same
    // file system is missed, which the driver never makes).
    let Some(parent) = path.parent() else {
        return Ok(true);
    };
    let up = rustix::fs::statx(CWD, parent, flags, StatxFlags::BASIC_STATS)?;
    Ok((stat.stx_dev_major, stat.stx_dev_minor) != (up.stx_dev_major, up.stx_dev_minor))
}

/// Mounts a fresh tmpfs on `target` (nosuid, nodev, noexec: it only holds configuration files).
pub(crate) fn mount_tmpfs(target: &Path) -> io::Result<()> {
    rustix::mount::mount(
        "tmpfs",
        target,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        TMPFS_OPTIONS,
    )?;
    Ok(())
}

/// Unmounts `target`.
pub fn unmount(target: &Path) -> io::Result<()> {
    rustix::mount::unmount(target, UnmountFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_a_mount_point_and_a_folder_in_it_usually_not() {
        // Every Linux process sees a root file system.
        assert!(mounted_at(Path::new("/")).unwrap().is_some());
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("plain");
        std::fs::create_dir(&inner).unwrap();
        assert_eq!(mounted_at(&inner).unwrap(), None);
        assert!(mounted_at(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_tmpfs_is_seen_mounted_and_gone_after_unmount() {
        let dir = tempfile::tempdir().unwrap();
        let target = std::fs::canonicalize(dir.path()).unwrap();
        if !running_as_root() || mount_tmpfs(&target).is_err() {
            // Not allowed to mount here (no CAP_SYS_ADMIN): nothing to check.
            return;
        }
        let mounted = mounted_at(&target).unwrap();
        unmount(&target).unwrap();
        assert!(mounted.is_some_and(FileSystem::is_tmpfs), "{mounted:?}");
        assert_eq!(mounted_at(&target).unwrap(), None);
    }
}
