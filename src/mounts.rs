//! Whether the configuration file is a single-file bind mount.
//!
//! `docker run -v /host/ginx.toml:/etc/ginx/ginx.toml` and Kubernetes
//! `subPath` mounts bind one inode. Editors and `kubectl apply` replace a
//! file by renaming a new one over it, which gives the host path a new inode
//! that the container never sees: the mount keeps showing the old text, and
//! reload never fires. The process lifecycle asks [`is_single_file_mount`]
//! and logs a warning; this module only answers the question, from
//! `/proc/self/mountinfo`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether `path` (after resolving symlinks) is itself a mount point, and a
/// file. `false` when that cannot be told (no `/proc`, a path that does not
/// exist).
pub(crate) fn is_single_file_mount(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    if !path.is_file() {
        return false;
    }
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(mountinfo) => is_mount_point(&mountinfo, &path),
        Err(_) => false,
    }
}

/// Whether `path` is the mount point (field 5) of a line of `mountinfo`
/// (the format of `/proc/PID/mountinfo`, see proc(5)).
fn is_mount_point(mountinfo: &str, path: &Path) -> bool {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| Path::new(OsStr::from_bytes(&unescape(mount_point))) == path)
}

/// mountinfo writes space, tab, newline and backslash in paths as octal
/// escapes (`\040`, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                // Three octal digits reach 0o777; only bytes are escaped.
                match u8::try_from(value) {
                    Ok(byte) => out.push(byte),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 4]),
                }
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container's mountinfo: the root overlay, a directory volume, a
    /// single file bound by `docker run -v /host/ginx.toml:/etc/ginx/ginx.toml`,
    /// and a file whose mount point has a space in it.
    const MOUNTINFO: &str = "\
1203 1150 0:312 / / rw,relatime master:552 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work
1204 1203 0:315 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1210 1203 8:1 /srv/ginx/conf.d /etc/ginx/conf.d ro,relatime - ext4 /dev/sda1 rw,errors=remount-ro
1211 1203 8:1 /home/me/ginx.toml /etc/ginx/ginx.toml rw,relatime - ext4 /dev/sda1 rw,errors=remount-ro
1212 1203 8:1 /home/me/my\\040config.toml /etc/my\\040ginx/ginx.toml rw,relatime - ext4 /dev/sda1 rw
";

    #[test]
    fn a_file_bound_by_docker_is_a_mount_point() {
        assert!(is_mount_point(MOUNTINFO, Path::new("/etc/ginx/ginx.toml")));
    }

    #[test]
    fn a_file_inside_a_mounted_directory_is_not() {
        assert!(is_mount_point(MOUNTINFO, Path::new("/etc/ginx/conf.d")));
        assert!(!is_mount_point(MOUNTINFO, Path::new("/etc/ginx/conf.d/app.toml")));
        assert!(!is_mount_point(MOUNTINFO, Path::new("/etc/ginx/other.toml")));
        // The host side of a bind (field 4) is not the mount point.
        assert!(!is_mount_point(MOUNTINFO, Path::new("/home/me/ginx.toml")));
    }

    #[test]
    fn escaped_spaces_are_decoded() {
        assert!(is_mount_point(MOUNTINFO, Path::new("/etc/my ginx/ginx.toml")));
        assert!(!is_mount_point(
            MOUNTINFO,
            Path::new("/etc/my\\040ginx/ginx.toml")
        ));
        assert_eq!(unescape(r"a\011b\012c\134d\040"), b"a\tb\nc\\d ");
        // Not an escape: left as it is.
        assert_eq!(unescape(r"a\9b\0"), br"a\9b\0");
    }

    #[test]
    fn an_ordinary_file_is_not_a_mount() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ginx.toml");
        std::fs::write(&file, "").unwrap();
        assert!(!is_single_file_mount(&file));
        assert!(!is_single_file_mount(&dir.path().join("missing.toml")));
    }
}
