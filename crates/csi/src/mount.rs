//! The tmpfs under a volume's target path. The driver runs `mount`/`umount` (util-linux) rather than calling the
//! syscalls itself, which would need `unsafe` or a libc binding; both are on every node image that runs a CSI
//! driver.

use std::path::{Path, PathBuf};

use tokio::process::Command;

/// tmpfs options: small (the files are a few KiB) and world-readable, so any container user can read them.
const TMPFS_OPTIONS: &str = "size=4m,mode=0755";

/// Whether the process runs with effective uid 0, from `/proc/self/status`.
pub(crate) fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// One line of `/proc/self/mountinfo`: the mount point and the file-system type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// Parses `/proc/self/mountinfo` text (see proc(5)); lines it cannot read are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let fs_type = right.split(' ').next()?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape_octal(mount_point)),
                fs_type: fs_type.to_owned(),
            })
        })
        .collect()
}

/// The kernel writes space, tab, newline and backslash in mount points as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file-system type mounted at `path` (the top-most mount when several are stacked), or `None` when `path`
/// is not a mount point. `path` should be canonical.
pub fn mounted_fs_type(path: &Path) -> std::io::Result<Option<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|e| e.mount_point == path)
        .map(|e| e.fs_type))
}

/// Mounts a fresh tmpfs on `target`. The error is `mount`'s own message.
pub(crate) async fn mount_tmpfs(target: &Path) -> Result<(), String> {
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", TMPFS_OPTIONS, "tmpfs"])
        .arg(target))
    .await
}

/// Unmounts `target`.
pub(crate) async fn unmount(target: &Path) -> Result<(), String> {
    run(Command::new("umount").arg(target)).await
}

async fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| format!("cannot run {:?}: {err}", command.as_std().get_program()))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!("{} ({})", stderr.trim(), output.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
36 22 0:40 / /var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/my\\040vol/mount rw,relatime shared:20 - tmpfs tmpfs rw,size=4096k,mode=755
garbage line
";
        let entries = parse_mountinfo(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].fs_type, "ext4");
        assert_eq!(
            entries[1].mount_point,
            PathBuf::from("/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/my vol/mount")
        );
        assert_eq!(entries[1].fs_type, "tmpfs");
        assert_eq!(unescape_octal("a\\134b\\011"), "a\\b\t");
        assert_eq!(unescape_octal("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn the_root_mount_is_found() {
        // Every Linux process sees a root file system.
        assert!(mounted_fs_type(Path::new("/")).unwrap().is_some());
    }
}
