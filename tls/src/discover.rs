//! Finding the TLS libraries processes have loaded: every `/proc/<pid>/maps` line that maps a
//! `libssl.so*` file. A library inside a container is reached through `/proc/<pid>/root`, so
//! the agent (in its own mount namespace) attaches to the very file the process mapped. One
//! file loaded by many processes (the same inode) is one library: uprobes are per file, so
//! one attachment covers every process that maps it, including ones started later.
//!
//! Limits: at most [`MAX_LIBRARIES`] distinct files (the rest counted in
//! [`Scan::over_cap`]); processes whose maps cannot be read (gone, or not permitted) are
//! counted, not fatal.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Most distinct library files one scan returns.
pub const MAX_LIBRARIES: usize = 256;

/// One library file and the processes that map it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// A path the agent can open: `/proc/<pid>/root` + the path the process mapped.
    pub path: PathBuf,
    /// The path as the process sees it (`/usr/lib/x86_64-linux-gnu/libssl.so.3`).
    pub mapped_as: String,
    /// Device and inode: the identity uprobes attach to.
    pub id: (u64, u64),
    pub pids: Vec<u32>,
    /// The `/proc` the scan read (to reach the file through another process).
    pub proc_root: PathBuf,
}

impl Library {
    /// Paths to this file through each process that mapped it, `path` first: when that
    /// process has exited, another still reaches the same file.
    pub fn paths(&self) -> impl Iterator<Item = PathBuf> + '_ {
        let rel = self.mapped_as.trim_start_matches('/');
        std::iter::once(self.path.clone()).chain(
            self.pids
                .iter()
                .skip(1)
                .map(move |pid| self.proc_root.join(pid.to_string()).join("root").join(rel)),
        )
    }

    /// The first of [`Library::paths`] that still opens this very file (same device and
    /// inode), if any.
    pub fn reachable_path(&self) -> Option<PathBuf> {
        self.paths().find(|p| self.reaches(p))
    }

    /// Whether `path` opens this very file now (same device and inode).
    pub fn reaches(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }
}

/// What one scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    pub libraries: Vec<Library>,
    /// Processes whose maps could not be read.
    pub unreadable: usize,
    /// Distinct libraries past [`MAX_LIBRARIES`].
    pub over_cap: usize,
}

/// Whether a mapped file is OpenSSL's (or a fork's) libssl.
pub fn is_libssl(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("libssl.so")
}

/// Scan `proc_root` (normally `/proc`) for mapped libssl files.
pub fn scan(proc_root: &Path) -> Scan {
    let mut out = Scan::default();
    let mut found: BTreeMap<(u64, u64), Library> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(maps) = std::fs::read_to_string(e.path().join("maps")) else {
            out.unreadable += 1;
            continue;
        };
        for line in maps.lines() {
            // address perms offset dev inode path
            let Some(mapped) = line.split_whitespace().nth(5) else {
                continue;
            };
            if !is_libssl(mapped) {
                continue;
            }
            let path = e.path().join("root").join(mapped.trim_start_matches('/'));
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = (meta.dev(), meta.ino());
            if let Some(lib) = found.get_mut(&id) {
                if lib.pids.last() != Some(&pid) {
                    lib.pids.push(pid);
                }
                continue;
            }
            if found.len() >= MAX_LIBRARIES {
                out.over_cap += 1;
                continue;
            }
            found.insert(
                id,
                Library {
                    path,
                    mapped_as: mapped.to_string(),
                    id,
                    pids: vec![pid],
                    proc_root: proc_root.to_path_buf(),
                },
            );
        }
    }
    out.libraries = found.into_values().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libssl_names() {
        assert!(is_libssl("/usr/lib/x86_64-linux-gnu/libssl.so.3"));
        assert!(is_libssl("/opt/app/lib/libssl.so.1.1"));
        assert!(!is_libssl("/usr/lib/x86_64-linux-gnu/libcrypto.so.3"));
        assert!(
            !is_libssl("/usr/lib/libssl3.so"),
            "NSS's libssl3 is not OpenSSL"
        );
    }

    #[test]
    fn a_fake_proc_tree_is_scanned_once_per_file() {
        let root = std::env::temp_dir().join(format!("tw-tls-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let lib = "usr/lib/libssl.so.3";
        for pid in ["10", "11"] {
            let dir = root.join(pid);
            std::fs::create_dir_all(dir.join("root/usr/lib")).unwrap();
            std::fs::write(dir.join("root").join(lib), b"elf").unwrap();
            std::fs::write(
                dir.join("maps"),
                format!(
                    "7f00-7f10 r-xp 00000000 08:01 1234 /{lib}\n7f10-7f20 r--p 00000000 08:01 1234 /{lib}\n"
                ),
            )
            .unwrap();
        }
        // Same path, but each "container root" holds its own file: two libraries.
        std::fs::create_dir_all(root.join("12")).unwrap();
        std::fs::write(
            root.join("12/maps"),
            "7f00-7f10 r-xp 0 0 0 /usr/lib/libc.so.6\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("self")).unwrap();
        let s = scan(&root);
        assert_eq!(s.libraries.len(), 2, "{s:?}");
        assert!(
            s.libraries
                .iter()
                .all(|l| l.mapped_as == "/usr/lib/libssl.so.3")
        );
        let pids: Vec<u32> = s.libraries.iter().flat_map(|l| l.pids.clone()).collect();
        assert_eq!(
            pids.len(),
            2,
            "one entry per process, not per mapping: {pids:?}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_library_stays_reachable_through_another_process() {
        let root = std::env::temp_dir().join(format!("tw-tls-reach-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // Two processes share one root (a hard link stands for the shared mount): one file.
        std::fs::create_dir_all(root.join("shared/usr/lib")).unwrap();
        std::fs::write(root.join("shared/usr/lib/libssl.so.3"), b"elf").unwrap();
        for pid in ["20", "21"] {
            std::fs::create_dir_all(root.join(pid).join("root/usr/lib")).unwrap();
            std::fs::hard_link(
                root.join("shared/usr/lib/libssl.so.3"),
                root.join(pid).join("root/usr/lib/libssl.so.3"),
            )
            .unwrap();
            std::fs::write(
                root.join(pid).join("maps"),
                "7f00-7f10 r-xp 0 08:01 9 /usr/lib/libssl.so.3\n",
            )
            .unwrap();
        }
        let s = scan(&root);
        assert_eq!(s.libraries.len(), 1, "{s:?}");
        let lib = &s.libraries[0];
        assert_eq!(lib.pids.len(), 2);
        assert_eq!(lib.reachable_path().as_ref(), Some(&lib.path));
        // The first process exits: the second still reaches the file.
        let first = lib.pids[0].to_string();
        std::fs::remove_dir_all(root.join(&first)).unwrap();
        let other = lib.reachable_path().expect("reachable");
        assert_ne!(other, lib.path);
        assert!(other.starts_with(root.join(lib.pids[1].to_string())));
        // Both gone: unreachable.
        std::fs::remove_dir_all(root.join(lib.pids[1].to_string())).unwrap();
        assert_eq!(lib.reachable_path(), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
