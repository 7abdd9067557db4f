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
use std::time::{Duration, Instant};

use libbpf_rs::{
    Link, MapCore, MapFlags, Object, ObjectBuilder, RingBuffer, RingBufferBuilder, UprobeOpts,
};

use crate::chunk::{Chunk, ChunkError};
use crate::discover::{Library, MAX_LIBRARIES, Scan};
use crate::executable::{self, Executable, Unsupported};
use crate::golang::GoTls;

/// The compiled BPF object (`bpf/tls.bpf.c`, built by `build.rs`).
const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tls.bpf.o"));

/// Most chunks held between two polls; past it the oldest are dropped and counted (the BPF
/// ring buffer is the real queue, this one only bridges its callback to [`Tracer::poll`]).
const MAX_PENDING: usize = 65536;

/// How long one [`Tracer::add`] spends reading executables it has not read before.
pub const INSPECT_BUDGET: Duration = Duration::from_millis(50);

/// Most executables whose inspection is remembered (past it, only those running are).
const MAX_INSPECTED: usize = 4096;

/// Most exec'd process ids held between two [`Tracer::take_execs`]; past it they are dropped
/// and counted (the periodic rescan still finds those processes).
const MAX_EXECS: usize = 4096;

/// OpenSSL's plaintext functions and the BPF program for each one's entry. Every one also gets
/// the shared return probe.
const OPENSSL_FUNCTIONS: [(&str, &str); 4] = [
    ("SSL_write", "ssl_write_entry"),
    ("SSL_read", "ssl_read_entry"),
    ("SSL_write_ex", "ssl_write_ex_entry"),
    ("SSL_read_ex", "ssl_read_ex_entry"),
];

/// An executable that does TLS the tracer cannot follow, and the processes running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedExecutable {
    /// Its path as the processes see it.
    pub path: String,
    pub id: (u64, u64),
    pub pids: Vec<u32>,
    pub why: Unsupported,
}

/// What [`Tracer::sync`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub attached: usize,
    pub detached: usize,
    /// Files that could not be attached, each by its reason ([`TlsError::reason`]: no
    /// `SSL_*` exports, their processes exited, the kernel refused the probe).
    pub failed: Vec<&'static str>,
    /// Files not attached because [`MAX_LIBRARIES`] were (or the scan stopped at its cap).
    pub over_cap: usize,
    /// Executables in the scan that do TLS the tracer cannot follow.
    pub unsupported: Vec<UnsupportedExecutable>,
    /// Executables left for a later call: reading them would have passed [`INSPECT_BUDGET`].
    pub deferred: usize,
    /// Executables not read yet, when reading is left to the caller
    /// ([`Tracer::inspect_elsewhere`]): read them, [`Tracer::learn`] what they hold, `add`
    /// them again.
    pub uninspected: Vec<Library>,
    /// The processes of the files attached by this call: their connections open now predate
    /// the probes ([`crate::sockets::established`]).
    pub attached_pids: Vec<u32>,
}

/// Which attached files a scan no longer lists, and which listed files are new.
fn plan<'s>(attached: &[(u64, u64)], scan: &'s Scan) -> (Vec<(u64, u64)>, Vec<&'s Library>) {
    let listed = || scan.libraries.iter().chain(&scan.executables);
    let gone = attached
        .iter()
        .copied()
        .filter(|id| !listed().any(|l| l.id == *id))
        .collect();
    let new = listed().filter(|l| !attached.contains(&l.id)).collect();
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

impl TlsError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TlsError::Load(_) => "load",
            TlsError::NotPermitted => "not_permitted",
            TlsError::Attach { .. } => "refused",
            TlsError::NoFunctions(_) => "no_functions",
            TlsError::Gone(_) => "exited",
            TlsError::Poll(_) => "poll",
        }
    }
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
    /// Exec events the ring buffer or the agent's queue had no room for.
    pub execs_lost: u64,
}

/// What the ring buffer's callback leaves for [`Tracer::poll`].
#[derive(Default)]
struct Inbox {
    chunks: VecDeque<Chunk>,
    bad: u64,
    dropped: u64,
    execs: Vec<u32>,
    execs_dropped: u64,
}

/// The probes on one file, and when a scan last found a process using it.
struct Attachment {
    _links: Vec<Link>,
    seen: Instant,
}

/// How long a file no process uses stays attached: a program run again and again (a job, a
/// command-line tool) is then traced from the first byte of each run.
pub const KEEP_UNUSED: Duration = Duration::from_secs(60);

/// The loaded program, its links, and its ring buffer.
pub struct Tracer {
    // Field order is drop order: the ring buffer and links go before the object.
    ring: RingBuffer<'static>,
    inbox: Rc<RefCell<Inbox>>,
    libraries: BTreeMap<(u64, u64), Attachment>,
    /// What each executable of the last scan holds (read once per file).
    executables: BTreeMap<(u64, u64), Executable>,
    /// Whether [`Tracer::add`] reads new executables itself (else it lists them).
    inspect_inline: bool,
    _sys_enter: Link,
    _exec: Link,
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
        let exec = object
            .progs_mut()
            .find(|p| p.name() == "on_exec")
            .ok_or_else(|| TlsError::Load("program on_exec missing".into()))?
            .attach_raw_tracepoint("sched_process_exec")
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
        let execs = object
            .maps()
            .find(|m| m.name() == "execs")
            .ok_or_else(|| TlsError::Load("map execs missing".into()))?;
        let sink = Rc::clone(&inbox);
        builder
            .add(&execs, move |rec: &[u8]| {
                let mut inbox = sink.borrow_mut();
                match pipeline::wire::ne32(rec, 0) {
                    Some(pid) if inbox.execs.len() < MAX_EXECS => inbox.execs.push(pid),
                    Some(_) => inbox.execs_dropped += 1,
                    None => inbox.bad += 1,
                }
                0
            })
            .map_err(load)?;
        let ring = builder.build().map_err(load)?;
        Ok(Tracer {
            ring,
            inbox,
            libraries: BTreeMap::new(),
            executables: BTreeMap::new(),
            inspect_inline: true,
            _sys_enter: sys_enter,
            _exec: exec,
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
        self.keep(id, links, attached, shown)
    }

    /// Keep the links of file `id` (shown as `shown`) when at least one function was attached.
    fn keep(
        &mut self,
        id: (u64, u64),
        links: Vec<Link>,
        attached: Vec<&'static str>,
        shown: String,
    ) -> Result<Vec<&'static str>, TlsError> {
        if attached.is_empty() {
            return Err(TlsError::NoFunctions(shown));
        }
        self.libraries.insert(
            id,
            Attachment {
                _links: links,
                seen: Instant::now(),
            },
        );
        Ok(attached)
    }

    /// Attach to Go's `crypto/tls` in the executable at `path` (identified by `id`): a uprobe
    /// at each function's entry and one at each of its `RET` instructions (found by
    /// [`crate::golang::inspect`]). Returns the functions attached.
    pub fn attach_go(
        &mut self,
        path: &Path,
        id: (u64, u64),
        go: &GoTls,
    ) -> Result<Vec<&'static str>, TlsError> {
        if self.libraries.contains_key(&id) {
            return Ok(Vec::new());
        }
        let shown = path.display().to_string();
        let ret = self.program("go_return")?;
        let mut links = Vec::new();
        let mut attached = Vec::new();
        for f in &go.functions {
            let entry = self.program(if f.write {
                "go_write_entry"
            } else {
                "go_read_entry"
            })?;
            let failed = |e: libbpf_rs::Error| TlsError::Attach {
                path: shown.clone(),
                function: f.name,
                reason: e.to_string(),
            };
            // Returns first: an entry probe without them would leave calls in flight.
            for &at in &f.returns {
                let off = usize::try_from(at).map_err(|_| TlsError::NoFunctions(shown.clone()))?;
                links.push(
                    ret.attach_uprobe_with_opts(-1, path, off, UprobeOpts::default())
                        .map_err(failed)?,
                );
            }
            let off = usize::try_from(f.entry).map_err(|_| TlsError::NoFunctions(shown.clone()))?;
            links.push(
                entry
                    .attach_uprobe_with_opts(-1, path, off, UprobeOpts::default())
                    .map_err(failed)?,
            );
            attached.push(f.name);
        }
        self.keep(id, links, attached, shown)
    }

    /// Attach to a library or executable a scan found, through any process that still maps
    /// it (the one the scan named first may have exited since). An executable is inspected
    /// once ([`executable::inspect`]); one with nothing to trace attaches nothing.
    pub fn attach_library(&mut self, lib: &Library) -> Result<Vec<&'static str>, TlsError> {
        for path in lib.paths() {
            if !lib.reaches(&path) {
                continue;
            }
            let res = if lib.executable {
                let what = self
                    .executables
                    .entry(lib.id)
                    .or_insert_with(|| executable::inspect(&path))
                    .clone();
                match what {
                    Executable::Go(go) => self.attach_go(&path, lib.id, &go),
                    Executable::StaticOpenSsl => self.attach_openssl(&path, lib.id),
                    Executable::NoTls | Executable::Unsupported(_) => return Ok(Vec::new()),
                }
            } else {
                self.attach_openssl(&path, lib.id)
            };
            match res {
                // The process exited between the check and the attach: try the next one.
                Err(_) if !lib.reaches(&path) => continue,
                res => return res,
            }
        }
        Err(TlsError::Gone(lib.mapped_as.clone()))
    }

    /// Leave reading new executables to the caller (a thread of its own, so reading a large
    /// file never delays the ring buffer): [`Tracer::add`] lists them in
    /// [`SyncReport::uninspected`] instead.
    pub fn inspect_elsewhere(&mut self) {
        self.inspect_inline = false;
    }

    /// What executable `id` holds, read by the caller ([`executable::inspect`]).
    pub fn learn(&mut self, id: (u64, u64), what: Executable) {
        self.executables.insert(id, what);
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

    /// Bring the attachments in line with a scan: detach from files no process has mapped
    /// for [`KEEP_UNUSED`], then [`Tracer::add`] what is new.
    pub fn sync(&mut self, scan: &Scan) -> SyncReport {
        let ids: Vec<(u64, u64)> = self.libraries.keys().copied().collect();
        let (gone, _) = plan(&ids, scan);
        let now = Instant::now();
        for (id, a) in &mut self.libraries {
            if !gone.contains(id) {
                a.seen = now;
            }
        }
        let mut detached = 0;
        for id in gone {
            if self
                .libraries
                .get(&id)
                .is_some_and(|a| now.duration_since(a.seen) >= KEEP_UNUSED)
            {
                self.detach(id);
                detached += 1;
            }
        }
        // What each file holds is kept while few enough (a program run every few seconds is
        // read once), and pruned to the scan's when past the cap.
        if self.executables.len() > MAX_INSPECTED {
            self.executables
                .retain(|id, _| scan.executables.iter().any(|e| e.id == *id));
        }
        SyncReport {
            detached,
            ..self.add(scan)
        }
    }

    /// Attach to the files of a scan (of all processes, or of a few new ones) not attached
    /// yet, while fewer than [`MAX_LIBRARIES`] are attached (the rest counted in
    /// [`SyncReport::over_cap`]); list its executables that cannot be followed.
    pub fn add(&mut self, scan: &Scan) -> SyncReport {
        let ids: Vec<(u64, u64)> = self.libraries.keys().copied().collect();
        let (_, new) = plan(&ids, scan);
        let mut report = SyncReport {
            over_cap: scan.over_cap,
            ..SyncReport::default()
        };
        let start = Instant::now();
        for lib in new {
            if self.libraries.len() >= MAX_LIBRARIES {
                report.over_cap += 1;
                continue;
            }
            // Reading executables not read before is the slow part: left to the caller, or
            // past the budget left for the next call, so the ring buffer is polled again soon.
            if lib.executable && !self.executables.contains_key(&lib.id) {
                if !self.inspect_inline {
                    report.uninspected.push(lib.clone());
                    continue;
                }
                if start.elapsed() >= INSPECT_BUDGET {
                    report.deferred += 1;
                    continue;
                }
            }
            match self.attach_library(lib) {
                Ok(f) if f.is_empty() => {}
                Ok(_) => {
                    report.attached += 1;
                    report.attached_pids.extend(&lib.pids);
                }
                Err(e) => report.failed.push(e.reason()),
            }
        }
        report.attached_pids.sort_unstable();
        report.attached_pids.dedup();
        for exe in &scan.executables {
            if let Some(Executable::Unsupported(why)) = self.executables.get(&exe.id) {
                report.unsupported.push(UnsupportedExecutable {
                    path: exe.mapped_as.clone(),
                    id: exe.id,
                    pids: exe.pids.clone(),
                    why: why.clone(),
                });
            }
        }
        report
    }

    /// Process ids that exec'd a program since the last call (the caller scans them with
    /// [`crate::discover::scan_pids`] and [`Tracer::add`]s what they run).
    pub fn take_execs(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.inbox.borrow_mut().execs)
    }

    fn program(&self, name: &str) -> Result<libbpf_rs::ProgramMut<'_>, TlsError> {
        self.object
            .progs_mut()
            .find(|p| p.name() == name)
            .ok_or_else(|| TlsError::Load(format!("program {name} missing")))
    }

    /// Wait up to `timeout`, then hand every chunk waiting to `f`, oldest first.
    ///
    /// The BPF program wakes this wait only for an exec or once a quarter of the chunk ring is
    /// full (a wakeup per chunk cost more than the rest of the probe), so `timeout` is also the
    /// longest a chunk waits in a quiet ring: call this on a short tick.
    pub fn poll(&mut self, timeout: Duration, mut f: impl FnMut(Chunk)) -> Result<(), TlsError> {
        let waited = self.ring.poll(timeout).and_then(|()| self.ring.consume());
        match waited {
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
        let mut v = [0u64; 11];
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
            execs_lost: v[10] + inbox.execs_dropped,
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
            executable: false,
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
