//! Loading the BPF program, attaching it, and reading its ring buffer.
//!
//! The raw tracepoint on system call entry, which binds each `SSL*` to its socket, is attached
//! once at [`Tracer::load`]; uprobes
//! are attached per library file ([`Tracer::attach_openssl`]) and detached when the tracer or
//! the library's entry is dropped. [`Tracer::poll`] hands over what arrived; records the parser
//! refuses are counted in [`Counters::bad_records`]. Dropping the tracer detaches everything.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use libbpf_rs::{
    Link, MapCore, MapFlags, Object, ObjectBuilder, RingBuffer, RingBufferBuilder, UprobeOpts,
};

use crate::chunk::{Chunk, ChunkError};
use crate::discover::{Library, MAX_LIBRARIES, Scan};

/// The compiled BPF object (`bpf/tls.bpf.c`, built by `build.rs`).
const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tls.bpf.o"));

/// Most chunks held between two polls; past it the oldest are dropped and counted (the BPF
/// ring buffer is the real queue, this one only bridges its callback to [`Tracer::poll`]).
const MAX_PENDING: usize = 65536;

/// OpenSSL's plaintext functions and the BPF program for each one's entry. Every one also gets
/// the shared return probe.
const OPENSSL_FUNCTIONS: [(&str, &str); 4] = [
    ("SSL_write", "ssl_write_entry"),
    ("SSL_read", "ssl_read_entry"),
    ("SSL_write_ex", "ssl_write_ex_entry"),
    ("SSL_read_ex", "ssl_read_ex_entry"),
];

/// What [`Tracer::sync`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub attached: usize,
    pub detached: usize,
    /// Files that could not be attached (no `SSL_*` exports, or their processes exited).
    pub failed: usize,
    /// Files not attached because [`MAX_LIBRARIES`] were (or the scan stopped at its cap).
    pub over_cap: usize,
}

/// Which attached files a scan no longer lists, and which listed files are new.
fn plan<'s>(attached: &[(u64, u64)], scan: &'s Scan) -> (Vec<(u64, u64)>, Vec<&'s Library>) {
    let gone = attached
        .iter()
        .copied()
        .filter(|id| !scan.libraries.iter().any(|l| l.id == *id))
        .collect();
    let new = scan
        .libraries
        .iter()
        .filter(|l| !attached.contains(&l.id))
        .collect();
    (gone, new)
}

/// Why the tracer could not start or attach.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("loading the TLS tracer's BPF program: {0}")]
    Load(String),
    #[error(
        "the TLS tracer needs root, or CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE (loading its BPF program was not permitted)"
    )]
    NotPermitted,
    #[error("attaching to {function} in {path}: {reason}")]
    Attach {
        path: String,
        function: &'static str,
        reason: String,
    },
    #[error("{0} exports none of SSL_read, SSL_write, SSL_read_ex, SSL_write_ex")]
    NoFunctions(String),
    #[error("{0}: every process that mapped it has exited")]
    Gone(String),
    #[error("reading the TLS tracer's ring buffer: {0}")]
    Poll(String),
}

/// Tracer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Size of the BPF ring buffer: a power of two, at least one page.
    pub ring_bytes: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ring_bytes: 8 << 20,
        }
    }
}

/// The BPF program's counters (summed over CPUs), and the parser's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// TLS calls that returned.
    pub calls: u64,
    /// Chunks and plaintext bytes put in the ring buffer.
    pub chunks: u64,
    pub bytes: u64,
    /// Chunks the ring buffer had no room for, and their bytes.
    pub lost_chunks: u64,
    pub lost_bytes: u64,
    /// Bytes past `MAX_CHUNKS` chunks of one call.
    pub truncated_bytes: u64,
    /// Calls that moved bytes through two sockets (not attributed).
    pub two_sockets: u64,
    /// Calls whose `SSL*` had no socket bound yet.
    pub unbound: u64,
    /// Buffers the program could not read.
    pub read_faults: u64,
    /// Calls not tracked because the table of calls in flight was full.
    pub calls_cap: u64,
    /// Ring-buffer records the parser refused.
    pub bad_records: u64,
    /// Chunks dropped between the ring buffer and [`Tracer::poll`].
    pub pending_dropped: u64,
}

/// What the ring buffer's callback leaves for [`Tracer::poll`].
#[derive(Default)]
struct Inbox {
    chunks: VecDeque<Chunk>,
    bad: u64,
    dropped: u64,
}

/// The loaded program, its links, and its ring buffer.
pub struct Tracer {
    // Field order is drop order: the ring buffer and links go before the object.
    ring: RingBuffer<'static>,
    inbox: Rc<RefCell<Inbox>>,
    libraries: BTreeMap<(u64, u64), Vec<Link>>,
    _sys_enter: Link,
    object: Object,
}

impl Tracer {
    /// Load the program and attach its system-call tracepoint. Needs `CAP_BPF` and `CAP_PERFMON` (or
    /// root) and a kernel with BTF.
    pub fn load(cfg: Config) -> Result<Tracer, TlsError> {
        // libbpf's own messages would add lines of its own to the one the caller prints from
        // the error; the error says what failed.
        libbpf_rs::set_print(None);
        let load = |e: libbpf_rs::Error| match e.kind() {
            libbpf_rs::ErrorKind::PermissionDenied => TlsError::NotPermitted,
            _ => TlsError::Load(e.to_string()),
        };
        let mut open = ObjectBuilder::default().open_memory(OBJECT).map_err(load)?;
        if let Some(mut ring) = open.maps_mut().find(|m| m.name() == "chunks") {
            ring.set_max_entries(cfg.ring_bytes).map_err(load)?;
        }
        let object = open.load().map_err(load)?;
        let sys_enter = object
            .progs_mut()
            .find(|p| p.name() == "sys_enter")
            .ok_or_else(|| TlsError::Load("program sys_enter missing".into()))?
            .attach_raw_tracepoint("sys_enter")
            .map_err(load)?;
        let inbox = Rc::new(RefCell::new(Inbox::default()));
        let sink = Rc::clone(&inbox);
        let mut builder = RingBufferBuilder::new();
        let map = object
            .maps()
            .find(|m| m.name() == "chunks")
            .ok_or_else(|| TlsError::Load("map chunks missing".into()))?;
        builder
            .add(&map, move |rec: &[u8]| {
                let mut inbox = sink.borrow_mut();
                match Chunk::parse(rec) {
                    Ok(c) => {
                        if inbox.chunks.len() >= MAX_PENDING {
                            inbox.chunks.pop_front();
                            inbox.dropped += 1;
                        }
                        inbox.chunks.push_back(c);
                    }
                    Err(ChunkError::ShortHeader | ChunkError::ShortData | ChunkError::OverCap) => {
                        inbox.bad += 1
                    }
                }
                0
            })
            .map_err(load)?;
        let ring = builder.build().map_err(load)?;
        Ok(Tracer {
            ring,
            inbox,
            libraries: BTreeMap::new(),
            _sys_enter: sys_enter,
            object,
        })
    }

    /// Attach to OpenSSL's plaintext functions in the library file at `path` (identified by
    /// `id`, its device and inode, so a file is attached once). Returns the functions attached;
    /// a function the file does not export is skipped, none at all is an error.
    pub fn attach_openssl(
        &mut self,
        path: &Path,
        id: (u64, u64),
    ) -> Result<Vec<&'static str>, TlsError> {
        if self.libraries.contains_key(&id) {
            return Ok(Vec::new());
        }
        let shown = path.display().to_string();
        let ret = self.program("ssl_return")?;
        let mut links = Vec::new();
        let mut attached = Vec::new();
        for (function, prog) in OPENSSL_FUNCTIONS {
            let entry = self.program(prog)?;
            let opts = |retprobe| UprobeOpts {
                retprobe,
                func_name: Some(function.to_string()),
                ..UprobeOpts::default()
            };
            // Both or neither: an entry without its return would leave calls in flight.
            let pair = entry
                .attach_uprobe_with_opts(-1, path, 0, opts(false))
                .and_then(|e| {
                    ret.attach_uprobe_with_opts(-1, path, 0, opts(true))
                        .map(|r| (e, r))
                });
            match pair {
                Ok((e, r)) => {
                    links.push(e);
                    links.push(r);
                    attached.push(function);
                }
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(TlsError::Attach {
                        path: shown,
                        function,
                        reason: e.to_string(),
                    });
                }
            }
        }
        if attached.is_empty() {
            return Err(TlsError::NoFunctions(shown));
        }
        self.libraries.insert(id, links);
        Ok(attached)
    }

    /// Attach to a library a scan found, through any process that still maps it (the one the
    /// scan named first may have exited since).
    pub fn attach_library(&mut self, lib: &Library) -> Result<Vec<&'static str>, TlsError> {
        for path in lib.paths() {
            if !lib.reaches(&path) {
                continue;
            }
            match self.attach_openssl(&path, lib.id) {
                // The process exited between the check and the attach: try the next one.
                Err(_) if !lib.reaches(&path) => continue,
                res => return res,
            }
        }
        Err(TlsError::Gone(lib.mapped_as.clone()))
    }

    /// Never trace process `pid` (the agent itself: its own TLS connections, through a libssl
    /// it may link, are not what it reports).
    pub fn exclude_process(&mut self, pid: u32) -> Result<(), TlsError> {
        let map = self
            .object
            .maps()
            .find(|m| m.name() == "settings")
            .ok_or_else(|| TlsError::Load("map settings missing".into()))?;
        map.update(&0u32.to_ne_bytes(), &pid.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| TlsError::Load(e.to_string()))
    }

    /// Detach from a library file (its processes are gone).
    pub fn detach(&mut self, id: (u64, u64)) -> bool {
        self.libraries.remove(&id).is_some()
    }

    /// Library files attached now.
    pub fn attached(&self) -> usize {
        self.libraries.len()
    }

    /// Bring the attachments in line with a scan: detach from files no process maps any more,
    /// attach to new ones while fewer than [`MAX_LIBRARIES`] are attached (the rest counted in
    /// [`SyncReport::over_cap`]).
    pub fn sync(&mut self, scan: &Scan) -> SyncReport {
        let ids: Vec<(u64, u64)> = self.libraries.keys().copied().collect();
        let (gone, new) = plan(&ids, scan);
        let mut report = SyncReport {
            detached: gone.len(),
            over_cap: scan.over_cap,
            ..SyncReport::default()
        };
        for id in gone {
            self.detach(id);
        }
        for lib in new {
            if self.libraries.len() >= MAX_LIBRARIES {
                report.over_cap += 1;
                continue;
            }
            match self.attach_library(lib) {
                Ok(_) => report.attached += 1,
                Err(_) => report.failed += 1,
            }
        }
        report
    }

    fn program(&self, name: &str) -> Result<libbpf_rs::ProgramMut<'_>, TlsError> {
        self.object
            .progs_mut()
            .find(|p| p.name() == name)
            .ok_or_else(|| TlsError::Load(format!("program {name} missing")))
    }

    /// Wait up to `timeout` for chunks and hand each to `f`, oldest first.
    pub fn poll(&mut self, timeout: Duration, mut f: impl FnMut(Chunk)) -> Result<(), TlsError> {
        match self.ring.poll(timeout) {
            Ok(()) => {}
            // A signal woke the wait (SIGTERM on its way to the runtime): not a failure.
            Err(e) if e.kind() == libbpf_rs::ErrorKind::Interrupted => {}
            Err(e) => return Err(TlsError::Poll(e.to_string())),
        }
        loop {
            let next = self.inbox.borrow_mut().chunks.pop_front();
            match next {
                Some(c) => f(c),
                None => return Ok(()),
            }
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        let mut v = [0u64; 10];
        if let Some(map) = self.object.maps().find(|m| m.name() == "counters") {
            for (slot, total) in v.iter_mut().enumerate() {
                let key = (slot as u32).to_ne_bytes();
                if let Ok(Some(per_cpu)) = map.lookup_percpu(&key, MapFlags::ANY) {
                    *total = per_cpu
                        .iter()
                        .filter_map(|b| pipeline::wire::ne64(b, 0))
                        .sum();
                }
            }
        }
        let inbox = self.inbox.borrow();
        Counters {
            calls: v[0],
            chunks: v[1],
            bytes: v[2],
            lost_chunks: v[3],
            lost_bytes: v[4],
            truncated_bytes: v[5],
            two_sockets: v[6],
            unbound: v[7],
            read_faults: v[8],
            calls_cap: v[9],
            bad_records: inbox.bad,
            pending_dropped: inbox.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib(id: u64) -> Library {
        Library {
            path: format!("/proc/{id}/root/usr/lib/libssl.so.3").into(),
            mapped_as: "/usr/lib/libssl.so.3".into(),
            id: (1, id),
            pids: vec![id as u32],
            proc_root: "/proc".into(),
        }
    }

    #[test]
    fn a_scan_detaches_what_no_process_maps_and_attaches_what_is_new() {
        let scan = Scan {
            libraries: vec![lib(2), lib(3)],
            ..Scan::default()
        };
        let (gone, new) = plan(&[(1, 1), (1, 2)], &scan);
        assert_eq!(gone, [(1, 1)]);
        assert_eq!(new.iter().map(|l| l.id).collect::<Vec<_>>(), [(1, 3)]);
        let empty = Scan::default();
        let (gone, new) = plan(&[], &empty);
        assert!(gone.is_empty() && new.is_empty());
    }
}
