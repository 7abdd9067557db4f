//! Finding the TLS libraries processes have loaded: every `/proc/<pid>/maps` line that maps a
//! `libssl.so*` file. A library inside a container is reached through `/proc/<pid>/root`, so
//! the agent (in its own mount namespace) attaches to the very file the process mapped. One
//! file loaded by many processes (the same inode) is one library: uprobes are per file, so
//! one attachment covers every process that maps it, including ones started later.
//!
//! Each process's executable is listed too (through `/proc/<pid>/exe`, which opens the file
//! the process runs even from another mount namespace): Go programs and programs with OpenSSL
//! linked in statically carry their TLS in the executable ([`crate::executable`] says which).
//!
//! Limits: at most [`MAX_LIBRARIES`] distinct libraries and [`MAX_EXECUTABLES`] distinct
//! executables (the rest counted in [`Scan::over_cap`]); processes whose maps cannot be read
//! (gone, or not permitted) are counted, not fatal.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Most distinct library files one scan returns.
pub const MAX_LIBRARIES: usize = 256;
/// Most distinct executable files one scan returns.
pub const MAX_EXECUTABLES: usize = 1024;

/// One library or executable file and the processes that map it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// A path the agent can open: `/proc/<pid>/root` + the path the process mapped, or
    /// `/proc/<pid>/exe` for an executable.
    pub path: PathBuf,
    /// The path as the process sees it (`/usr/lib/x86_64-linux-gnu/libssl.so.3`).
    pub mapped_as: String,
    /// A process's executable (else a shared library).
    pub executable: bool,
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
        std::iter::once(self.path.clone()).chain(self.pids.iter().skip(1).map(move |pid| {
            let dir = self.proc_root.join(pid.to_string());
            if self.executable {
                dir.join("exe")
            } else {
                dir.join("root").join(rel)
            }
        }))
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
    pub executables: Vec<Library>,
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

/// Add `pid` to the entry for file `id`, or a new entry from `new` while fewer than `cap`
/// are listed (else count it in `over_cap`).
fn note(
    found: &mut BTreeMap<(u64, u64), Library>,
    cap: usize,
    over_cap: &mut usize,
    id: (u64, u64),
    pid: u32,
    new: impl FnOnce() -> Library,
) {
    if let Some(lib) = found.get_mut(&id) {
        if lib.pids.last() != Some(&pid) {
            lib.pids.push(pid);
        }
    } else if found.len() >= cap {
        *over_cap += 1;
    } else {
        found.insert(id, new());
    }
}

/// What a scan collects before it is a [`Scan`].
#[derive(Default)]
struct Found {
    libraries: BTreeMap<(u64, u64), Library>,
    executables: BTreeMap<(u64, u64), Library>,
    out: Scan,
}

impl Found {
    /// Note process `pid`'s executable and the libssl files it maps.
    fn process(&mut self, proc_root: &Path, pid: u32) {
        let dir = proc_root.join(pid.to_string());
        let exe = dir.join("exe");
        // Kernel threads have no executable; a process gone since the listing neither.
        if let (Ok(target), Ok(meta)) = (std::fs::read_link(&exe), std::fs::metadata(&exe)) {
            let id = (meta.dev(), meta.ino());
            note(
                &mut self.executables,
                MAX_EXECUTABLES,
                &mut self.out.over_cap,
                id,
                pid,
                || Library {
                    path: exe.clone(),
                    mapped_as: target.to_string_lossy().into_owned(),
                    executable: true,
                    id,
                    pids: vec![pid],
                    proc_root: proc_root.to_path_buf(),
                },
            );
        }
        let Ok(maps) = std::fs::read_to_string(dir.join("maps")) else {
            self.out.unreadable += 1;
            return;
        };
        for line in maps.lines() {
            // address perms offset dev inode path
            let Some(mapped) = line.split_whitespace().nth(5) else {
                continue;
            };
            if !is_libssl(mapped) {
                continue;
            }
            let path = dir.join("root").join(mapped.trim_start_matches('/'));
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = (meta.dev(), meta.ino());
            note(
                &mut self.libraries,
                MAX_LIBRARIES,
                &mut self.out.over_cap,
                id,
                pid,
                || Library {
                    path,
                    mapped_as: mapped.to_string(),
                    executable: false,
                    id,
                    pids: vec![pid],
                    proc_root: proc_root.to_path_buf(),
                },
            );
        }
    }

    fn done(mut self) -> Scan {
        self.out.libraries = self.libraries.into_values().collect();
        self.out.executables = self.executables.into_values().collect();
        self.out
    }
}

/// Scan `proc_root` (normally `/proc`) for mapped libssl files and executables.
pub fn scan(proc_root: &Path) -> Scan {
    let mut found = Found::default();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return found.done();
    };
    for e in entries.flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
            found.process(proc_root, pid);
        }
    }
    found.done()
}

/// A process's executable held open, so it stays reachable (through `/proc/self/fd`) after the
/// process exits: a short-lived program is still inspected and attached to for its next run.
#[derive(Debug)]
pub struct OpenExecutable {
    _file: std::fs::File,
    pub library: Library,
}

/// Open process `pid`'s executable now (it just exec'd). `None` when it is gone already or
/// has none (a kernel thread).
pub fn open_executable(proc_root: &Path, pid: u32) -> Option<OpenExecutable> {
    use std::os::fd::AsRawFd;
    let exe = proc_root.join(pid.to_string()).join("exe");
    let file = std::fs::File::open(&exe).ok()?;
    let meta = file.metadata().ok()?;
    let target = std::fs::read_link(&exe)
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = (meta.dev(), meta.ino());
    Some(OpenExecutable {
        library: Library {
            path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            mapped_as: target,
            executable: true,
            id,
            pids: vec![pid],
            proc_root: proc_root.to_path_buf(),
        },
        _file: file,
    })
}

/// Scan only processes `pids` (ones that just exec'd).
pub fn scan_pids(proc_root: &Path, pids: &[u32]) -> Scan {
    let mut found = Found::default();
    for &pid in pids {
        found.process(proc_root, pid);
    }
    found.done()
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
