//! The TLS plaintext source in the agent: one thread that loads the `tls` crate's tracer,
//! attaches it to every libssl file processes have mapped, and feeds the plaintext into its own
//! pipeline, whose exchanges are published like the capture workers' (ARCHITECTURE.md §2,
//! "TLS plaintext").
//!
//! **Demand** (`tls.mode`, `--tls`): `on-demand` attaches the probes while dissection is
//! active (a subscriber or a sink) and detaches them when it stops, as packets are dissected
//! only then; `always` keeps them attached for the whole run; `off` never loads them. The
//! tracer needs root (or `CAP_BPF`, `CAP_PERFMON` and `CAP_SYS_PTRACE`) and a kernel with BTF:
//! when it cannot load, one line says why and packet capture goes on; it is not retried.
//!
//! **Processes**: `/proc/*/maps` and `/proc/*/exe` are scanned when the probes attach and every
//! [`RESCAN_EVERY`] after, so libraries and Go or statically linked executables of processes
//! started later are attached too (uprobes are per file: one attachment covers every process
//! mapping it, even later ones), and files no process maps any more are detached. At most
//! `tls::discover::MAX_LIBRARIES` files are attached; the rest are counted in
//! `tapwire_tls_libraries_over_cap`. An executable doing TLS the tracer cannot follow (an old
//! Go, a stripped static OpenSSL) is said once per file with its processes, and counted in
//! `tapwire_tls_processes_unsupported{reason}`. The agent's own process is excluded in the BPF
//! program.
//!
//! **Limits**: the tracer's and the feed's caps (ARCHITECTURE.md §3); its pipeline has the
//! workers' configuration, so the same memory budget. Losses are counted in
//! `tapwire_tls_chunks_total` / `tapwire_tls_bytes_total` and reach the dissectors as gaps.
//! **Spool**: every chunk dissected (the owner's copy) is also written to the spool's `tls/`
//! folder as plaintext records (`spool::plaintext`), one share of the spool's cap, so a
//! `since` replay and `tapwire pcap` include decrypted connections while the probes were
//! attached (always, with `tls.mode: always`).

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pipeline::Pipeline;
use tapwire_tls::executable::{self, Executable};
use tapwire_tls::{
    Config, Counters, Feed, FeedStats, Reorder, SyncReport, Tracer, discover, sockets,
};

use crate::capture::{Mirror, PIPELINE_STACK, Shared, publish, spool_housekeeping};
use crate::config::TlsMode;
use crate::metrics::Metrics;
use crate::spool::{WorkerSpool, plaintext};

/// How often `/proc` is scanned again for new libssl files while the probes are attached.
pub const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// How long after its exec a process's maps are read again: the dynamic loader maps its
/// libraries (a libssl of its own, in a container) just after the exec.
const LIBRARIES_AFTER: Duration = Duration::from_millis(100);

/// Most exec'd processes waiting for that second look (the rescan catches the rest).
const MAX_LATER: usize = 4096;

/// How long one wait on the ring buffer lasts (the stop flag and demand are checked between).
/// The ring wakes the wait only when a quarter full, so this is also the longest a chunk waits
/// before it is read: short against the reorder window (50 ms).
const POLL: Duration = Duration::from_millis(10);

/// Start the source's thread, unless `mode` is off.
/// Start the source's thread, unless `mode` is off; the plaintext it dissects is also
/// written to `spool` (the spool's `tls/` folder), when given.
pub fn spawn(
    mode: TlsMode,
    shared: Arc<Shared>,
    spool: Option<WorkerSpool>,
) -> std::io::Result<Option<JoinHandle<()>>> {
    if mode == TlsMode::Off {
        return Ok(None);
    }
    std::thread::Builder::new()
        .name("tapwire-tls".into())
        .stack_size(PIPELINE_STACK)
        .spawn(move || run(mode, &shared, spool))
        .map(Some)
}

/// How often the spool's caps are enforced and its file flushed (as the workers do).
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// The source's spool folder, shared with the feed's tap that writes each dissected chunk.
type SharedSpool = Rc<RefCell<WorkerSpool>>;

/// Write each chunk the feed dissects to `spool` as plaintext records.
fn tap_into(feed: &mut Feed, spool: &SharedSpool) {
    let spool = Rc::clone(spool);
    let mut packet = Vec::new();
    feed.set_tap(move |chunk| {
        let mut s = spool.borrow_mut();
        plaintext::encode(chunk, &mut packet, |packet, comment| {
            s.write_commented(
                plaintext::IFACE_KEY,
                plaintext::LINK_RAW,
                plaintext::INTERFACE,
                chunk.ts,
                packet,
                comment,
            );
        });
    });
}

/// The probes and what reads them, while attached.
struct Attached {
    tracer: Tracer,
    reorder: Reorder,
    feed: Feed,
    pipe: Pipeline,
    mirror: Mirror,
    /// Counters already added to the metrics (each tracer and feed starts from zero).
    seen: (Counters, FeedStats),
    /// `reorder.early` already added to the metrics.
    early_seen: u64,
    last_account: Instant,
    scanner: Scanner,
    /// Unsupported executables already said (cleared of files no process runs any more).
    said: BTreeSet<(u64, u64)>,
    /// Exec'd processes whose maps are read again at the instant given.
    later: VecDeque<(Instant, u32)>,
}

fn run(mode: TlsMode, shared: &Shared, spool: Option<WorkerSpool>) {
    let mut attached: Option<Attached> = None;
    let mut unavailable = false;
    let mut out = Vec::new();
    let spool: Option<SharedSpool> = spool.map(|s| Rc::new(RefCell::new(s)));
    let mut last_housekeeping = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(s) = &spool
            && last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY
        {
            last_housekeeping = Instant::now();
            let now = u64::try_from(wall_ns()).unwrap_or(0);
            spool_housekeeping(&shared.metrics, "tls", &mut s.borrow_mut(), now);
        }
        let wanted = mode == TlsMode::Always || shared.hub.active() > 0;
        if !wanted {
            if let Some(a) = attached.take() {
                finish(a, shared, &mut out);
            }
            std::thread::sleep(POLL);
            continue;
        }
        if attached.is_none() {
            if unavailable {
                std::thread::sleep(POLL);
                continue;
            }
            match attach(shared) {
                Ok(mut a) => {
                    if let Some(s) = &spool {
                        tap_into(&mut a.feed, s);
                    }
                    attached = Some(a);
                }
                Err(e) => {
                    eprintln!("tapwire: TLS plaintext off: {e}; packet capture goes on");
                    unavailable = true;
                    continue;
                }
            }
        }
        let Some(a) = attached.as_mut() else {
            continue;
        };
        let Attached {
            tracer,
            reorder,
            feed,
            pipe,
            ..
        } = a;
        let mut ready = |c| feed.push(c, pipe, &mut out);
        if let Err(e) = tracer.poll(POLL, |c| reorder.push(c, &mut ready)) {
            eprintln!("tapwire: TLS plaintext off: {e}");
            if let Some(a) = attached.take() {
                detach(a, shared);
            }
            unavailable = true;
            continue;
        }
        let now = tapwire_tls::feed::monotonic_ns();
        reorder.release(now, |c| feed.push(c, pipe, &mut out));
        feed.release(now, pipe, &mut out);
        publish(shared, &mut out);
        follow_execs(a, &shared.metrics);
        take_found(a, &shared.metrics);
        if a.last_account.elapsed() >= RESCAN_EVERY {
            a.last_account = Instant::now();
            account(a, &shared.metrics);
        }
    }
    if let Some(a) = attached.take() {
        finish(a, shared, &mut out);
    }
    if let Some(s) = spool {
        let _ = s.borrow_mut().close();
    }
}

/// The wall clock in Unix nanoseconds (the spool's time).
fn wall_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Load the tracer, exclude the agent, start the scanning thread (whose first scan attaches
/// to what runs now).
fn attach(shared: &Shared) -> Result<Attached, tapwire_tls::TlsError> {
    let mut tracer = Tracer::load(Config::default())?;
    tracer.exclude_process(std::process::id())?;
    tracer.inspect_elsewhere();
    let scanner = Scanner::spawn().map_err(|e| tapwire_tls::TlsError::Load(e.to_string()))?;
    let mut a = Attached {
        tracer,
        reorder: Reorder::new(),
        feed: Feed::new(),
        pipe: Pipeline::new(shared.pipeline.clone()),
        mirror: Mirror::default(),
        seen: Default::default(),
        early_seen: 0,
        last_account: Instant::now(),
        scanner,
        said: BTreeSet::new(),
        later: VecDeque::new(),
    };
    // The libraries mapped now are attached before the gauge says the probes are in; the
    // executables are read by the scanning thread.
    let report = a.tracer.sync(&discover::scan(Path::new("/proc")));
    noted(&mut a, report, &shared.metrics);
    shared.metrics.tls_tracing.set(1);
    Ok(a)
}

/// After an attach: the report's gauges, failures and unsupported files ([`note`]); the
/// connections the newly attached processes hold now, remembered as opened before the probes
/// (their plaintext is picked up mid-stream); executables not read yet, asked of the scanning
/// thread.
fn noted(a: &mut Attached, report: SyncReport, m: &Metrics) {
    note(&a.tracer, &report, &mut a.said, m);
    if !report.attached_pids.is_empty() {
        let now = tapwire_tls::feed::monotonic_ns();
        let open = sockets::established(Path::new("/proc"), &report.attached_pids);
        for e in open.connections {
            a.feed.opened_before(e, now);
        }
    }
    for lib in report.uninspected {
        a.scanner.ask(lib, None);
    }
}

/// Most executables waiting to be read by the scanning thread (past it, the next scan asks
/// again).
const MAX_JOBS: usize = 1024;

/// An executable for the scanning thread to read, held open when it came from an exec (so it
/// stays reachable through `/proc/self/fd` after its process exits).
struct Job {
    library: discover::Library,
    file: Option<discover::OpenExecutable>,
}

/// What the scanning thread sends back.
enum Found {
    /// A scan of every process.
    Scan(discover::Scan),
    /// An executable read, with what it holds (`None`: no longer reachable).
    Inspected(Box<(Job, Option<Executable>)>),
}

/// Executables waiting to be read: those of processes that just exec'd (a program started now
/// is about to make its first TLS call; a thread of their own reads them), and those a scan
/// found.
#[derive(Default)]
struct Jobs {
    urgent: VecDeque<Job>,
    background: VecDeque<Job>,
    closed: bool,
}

type JobQueue = Arc<(std::sync::Mutex<Jobs>, std::sync::Condvar)>;

/// The thread that scans `/proc` every [`RESCAN_EVERY`] and reads new executables, so the
/// thread polling the ring buffer never waits on either (reading a large file takes long).
/// It ends when this is dropped.
struct Scanner {
    jobs: JobQueue,
    found: std::sync::mpsc::Receiver<Found>,
    /// Executables asked for and not answered yet, and whether urgently.
    pending: std::collections::BTreeMap<(u64, u64), bool>,
}

impl Drop for Scanner {
    fn drop(&mut self) {
        let (lock, wake) = &*self.jobs;
        if let Ok(mut j) = lock.lock() {
            j.closed = true;
        }
        wake.notify_all();
    }
}

impl Scanner {
    /// Two threads: one scans `/proc` and reads what scans find; one reads only the files of
    /// programs that just exec'd, so those never wait behind a large file.
    fn spawn() -> std::io::Result<Scanner> {
        let jobs: JobQueue = Arc::default();
        let (reply, found) = std::sync::mpsc::channel();
        let (queue, replies) = (Arc::clone(&jobs), reply.clone());
        std::thread::Builder::new()
            .name("tapwire-tls-scan".into())
            .spawn(move || {
                // The first scan is the caller's.
                let mut next = Instant::now() + RESCAN_EVERY;
                loop {
                    if Instant::now() >= next {
                        next = Instant::now() + RESCAN_EVERY;
                        if replies
                            .send(Found::Scan(discover::scan(Path::new("/proc"))))
                            .is_err()
                        {
                            return;
                        }
                    }
                    match next_job(&queue, next, false) {
                        None => return,
                        Some(None) => {}
                        Some(Some(job)) => {
                            if !inspect(job, &replies) {
                                return;
                            }
                        }
                    }
                }
            })?;
        let queue = Arc::clone(&jobs);
        std::thread::Builder::new()
            .name("tapwire-tls-exec".into())
            .spawn(move || {
                while let Some(job) = next_job(&queue, Instant::now() + RESCAN_EVERY, true) {
                    if let Some(job) = job
                        && !inspect(job, &reply)
                    {
                        return;
                    }
                }
            })?;
        Ok(Scanner {
            jobs,
            found,
            pending: std::collections::BTreeMap::new(),
        })
    }

    /// Ask for `library` to be read, once while the answer is pending (urgently when it came
    /// from an exec, with its file held open); past [`MAX_JOBS`] waiting it is asked again at
    /// the next scan.
    fn ask(&mut self, library: discover::Library, file: Option<discover::OpenExecutable>) {
        let id = library.id;
        let urgent = file.is_some();
        // Asked already; an exec still asks again if the earlier ask came from a scan (whose
        // process may be gone by the time it is read).
        match self.pending.get(&id) {
            Some(true) => return,
            Some(false) if !urgent => return,
            _ => {}
        }
        let (lock, wake) = &*self.jobs;
        let Ok(mut j) = lock.lock() else { return };
        if j.urgent.len() + j.background.len() >= MAX_JOBS {
            return;
        }
        let job = Job { library, file };
        if urgent {
            j.urgent.push_back(job);
        } else {
            j.background.push_back(job);
        }
        self.pending.insert(id, urgent);
        wake.notify_all();
    }
}

/// Read one job's file and send what it holds; false when nobody listens any more.
fn inspect(job: Job, reply: &std::sync::mpsc::Sender<Found>) -> bool {
    let path = match &job.file {
        Some(_) => Some(job.library.path.clone()),
        None => job.library.reachable_path(),
    };
    // Unreachable (its processes are gone): nothing learnt.
    let what = path.map(|p| executable::inspect(&p));
    reply.send(Found::Inspected(Box::new((job, what)))).is_ok()
}

/// The next job from the urgent queue (`urgent`) or the other, waiting until `until` at
/// most: `None` when the queue is closed, `Some(None)` when the wait ran out.
fn next_job(queue: &JobQueue, until: Instant, urgent: bool) -> Option<Option<Job>> {
    let (lock, wake) = &**queue;
    let mut j = lock.lock().ok()?;
    loop {
        if j.closed {
            return None;
        }
        let job = if urgent {
            j.urgent.pop_front()
        } else {
            j.background.pop_front()
        };
        if job.is_some() {
            return Some(job);
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Some(None);
        }
        j = wake.wait_timeout(j, left).ok()?.0;
    }
}

/// Take what the scanning thread found: a scan brings the attachments in line with it (files
/// no process has used for a while detached, new ones attached); an executable read is
/// attached to if it holds TLS the tracer follows.
fn take_found(a: &mut Attached, m: &Metrics) {
    while let Ok(found) = a.scanner.found.try_recv() {
        let report = match found {
            Found::Scan(scan) => {
                let report = a.tracer.sync(&scan);
                m.tls_libraries_over_cap
                    .set(i64::try_from(report.over_cap).unwrap_or(i64::MAX));
                m.tls_unsupported.reset();
                a.said
                    .retain(|id| report.unsupported.iter().any(|u| u.id == *id));
                for u in &report.unsupported {
                    m.tls_unsupported
                        .with_label_values(&[u.why.reason])
                        .add(i64::try_from(u.pids.len()).unwrap_or(i64::MAX));
                }
                report
            }
            Found::Inspected(b) => {
                let (job, what) = *b;
                let id = job.library.id;
                if a.scanner.pending.get(&id) == Some(&(job.file.is_some())) {
                    a.scanner.pending.remove(&id);
                }
                let Some(what) = what else { continue };
                a.tracer.learn(id, what);
                let report = a.tracer.add(&discover::Scan {
                    executables: vec![job.library],
                    ..discover::Scan::default()
                });
                drop(job.file);
                report
            }
        };
        noted(a, report, m);
    }
}

/// The chunks still held (reordering, server ends waiting for their client end) and the
/// exchanges still open are dissected, spooled and published; then [`detach`].
fn finish(mut a: Attached, shared: &Shared, out: &mut Vec<schemas::Exchange>) {
    let Attached {
        reorder,
        feed,
        pipe,
        ..
    } = &mut a;
    reorder.finish(|c| feed.push(c, pipe, out));
    feed.finish(pipe, out);
    pipe.finish(out);
    publish(shared, out);
    detach(a, shared);
}

/// Detach everything (dropping the tracer detaches its probes), keeping the counts.
fn detach(mut a: Attached, shared: &Shared) {
    account(&mut a, &shared.metrics);
    shared.metrics.tls_tracing.set(0);
    shared.metrics.tls_libraries.set(0);
}

/// Processes that exec'd since the last look: their executables now, their maps again
/// [`LIBRARIES_AFTER`] later, so a program started after the probes is followed from its
/// first TLS call on (unless that call comes within milliseconds of its start).
fn follow_execs(a: &mut Attached, m: &Metrics) {
    let now = Instant::now();
    let execs = a.tracer.take_execs();
    // Each new program's file, opened at once so a process that already exited (or exits
    // while it is read) still leaves its file to attach to. A file read before is attached
    // here; a new one is read by the scanning thread.
    for pid in &execs {
        let Some(opened) = discover::open_executable(Path::new("/proc"), *pid) else {
            continue;
        };
        let mut report = a.tracer.add(&discover::Scan {
            executables: vec![opened.library.clone()],
            ..discover::Scan::default()
        });
        // Read by the scanning thread from the file held open here.
        let unread = !std::mem::take(&mut report.uninspected).is_empty();
        noted(a, report, m);
        if unread {
            let library = opened.library.clone();
            a.scanner.ask(library, Some(opened));
        }
    }
    for &pid in &execs {
        if a.later.len() < MAX_LATER {
            a.later.push_back((now + LIBRARIES_AFTER, pid));
        }
    }
    let mut due = Vec::new();
    while let Some(&(at, pid)) = a.later.front() {
        if at > now {
            break;
        }
        a.later.pop_front();
        due.push(pid);
    }
    if !due.is_empty() {
        let report = a.tracer.add(&discover::scan_pids(Path::new("/proc"), &due));
        noted(a, report, m);
    }
}

/// The attachments' gauge, failures by reason, and each unsupported executable said once.
fn note(tracer: &Tracer, report: &SyncReport, said: &mut BTreeSet<(u64, u64)>, m: &Metrics) {
    m.tls_libraries
        .set(i64::try_from(tracer.attached()).unwrap_or(i64::MAX));
    for reason in &report.failed {
        m.tls_attach_failures.with_label_values(&[reason]).inc();
    }
    for u in &report.unsupported {
        if said.insert(u.id) {
            let pids: Vec<String> = u.pids.iter().take(8).map(u32::to_string).collect();
            let more = if u.pids.len() > 8 { ", …" } else { "" };
            eprintln!(
                "tapwire: TLS plaintext of {} (pid {}{more}) not visible: {}",
                u.path,
                pids.join(", "),
                u.why.detail
            );
        }
    }
}

/// Add what the tracer, the feed and the pipeline counted since the last call.
fn account(a: &mut Attached, m: &Metrics) {
    a.mirror.catch_up(m, &a.pipe);
    let (c, f) = (a.tracer.counters(), a.feed.stats);
    let (c0, f0) = a.seen;
    let lost = |c: &Counters| c.lost_chunks + c.pending_dropped;
    let (chunks, bytes) = (&m.tls_chunks, &m.tls_bytes);
    let rows = [
        (chunks, "dissected", f.chunks, f0.chunks),
        (bytes, "dissected", f.bytes, f0.bytes),
        (chunks, "duplicate", f.duplicate_chunks, f0.duplicate_chunks),
        (bytes, "duplicate", f.duplicate_bytes, f0.duplicate_bytes),
        (chunks, "unbound", f.unbound_chunks, f0.unbound_chunks),
        (chunks, "lost", lost(&c), lost(&c0)),
        (bytes, "lost", c.lost_bytes, c0.lost_bytes),
        (chunks, "bad", c.bad_records, c0.bad_records),
        (bytes, "truncated", c.truncated_bytes, c0.truncated_bytes),
    ];
    let early = a.reorder.early;
    if early > a.early_seen {
        m.tls_chunks
            .with_label_values(&["unordered"])
            .inc_by(early - a.early_seen);
        a.early_seen = early;
    }
    let at_start = |f: &FeedStats| f.connections.saturating_sub(f.midstream);
    for (picked_up, now, before) in [
        ("at_start", at_start(&f), at_start(&f0)),
        ("midstream", f.midstream, f0.midstream),
    ] {
        if now > before {
            m.tls_connections
                .with_label_values(&[picked_up])
                .inc_by(now - before);
        }
    }
    if c.execs_lost > c0.execs_lost {
        m.tls_execs_lost.inc_by(c.execs_lost - c0.execs_lost);
    }
    for (counter, outcome, now, before) in rows {
        if now > before {
            counter.with_label_values(&[outcome]).inc_by(now - before);
        }
    }
    a.seen = (c, f);
}
