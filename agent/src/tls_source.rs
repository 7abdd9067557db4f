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
//! **Processes**: `/proc/*/maps` is scanned when the probes attach and every
//! [`RESCAN_EVERY`] after, so libraries of processes started later are attached too (uprobes
//! are per file: one attachment covers every process mapping it, even later ones), and files
//! no process maps any more are detached. At most `tls::discover::MAX_LIBRARIES` files are
//! attached; the rest are counted in `tapwire_tls_libraries_over_cap`. The agent's own process
//! is excluded in the BPF program.
//!
//! **Limits**: the tracer's and the feed's caps (ARCHITECTURE.md §3); its pipeline has the
//! workers' configuration, so the same memory budget. Losses are counted in
//! `tapwire_tls_chunks_total` / `tapwire_tls_bytes_total` and reach the dissectors as gaps.
//! What it does not do yet: spool the plaintext, or trace Go's crypto/tls.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pipeline::Pipeline;
use tapwire_tls::{Config, Counters, Feed, FeedStats, Tracer, discover};

use crate::capture::{Mirror, PIPELINE_STACK, Shared, publish};
use crate::config::TlsMode;
use crate::metrics::Metrics;

/// How often `/proc` is scanned again for new libssl files while the probes are attached.
pub const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// How long one wait on the ring buffer lasts (the stop flag and demand are checked between).
const POLL: Duration = Duration::from_millis(100);

/// Start the source's thread, unless `mode` is off.
pub fn spawn(mode: TlsMode, shared: Arc<Shared>) -> std::io::Result<Option<JoinHandle<()>>> {
    if mode == TlsMode::Off {
        return Ok(None);
    }
    std::thread::Builder::new()
        .name("tapwire-tls".into())
        .stack_size(PIPELINE_STACK)
        .spawn(move || run(mode, &shared))
        .map(Some)
}

/// The probes and what reads them, while attached.
struct Attached {
    tracer: Tracer,
    feed: Feed,
    pipe: Pipeline,
    mirror: Mirror,
    /// Counters already added to the metrics (each tracer and feed starts from zero).
    seen: (Counters, FeedStats),
    last_scan: Instant,
}

fn run(mode: TlsMode, shared: &Shared) {
    let mut attached: Option<Attached> = None;
    let mut unavailable = false;
    let mut out = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let wanted = mode == TlsMode::Always || shared.hub.active() > 0;
        if !wanted {
            if let Some(a) = attached.take() {
                detach(a, shared);
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
                Ok(a) => attached = Some(a),
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
            tracer, feed, pipe, ..
        } = a;
        if let Err(e) = tracer.poll(POLL, |c| feed.push(c, pipe, &mut out)) {
            eprintln!("tapwire: TLS plaintext off: {e}");
            if let Some(a) = attached.take() {
                detach(a, shared);
            }
            unavailable = true;
            continue;
        }
        feed.release(tapwire_tls::feed::monotonic_ns(), pipe, &mut out);
        publish(shared, &mut out);
        if a.last_scan.elapsed() >= RESCAN_EVERY {
            scan(&mut a.tracer, &shared.metrics);
            a.last_scan = Instant::now();
            account(a, &shared.metrics);
        }
    }
    if let Some(mut a) = attached.take() {
        a.feed.finish(&mut a.pipe, &mut out);
        a.pipe.finish(&mut out);
        publish(shared, &mut out);
        detach(a, shared);
    }
}

/// Load the tracer, exclude the agent, attach to every libssl mapped now.
fn attach(shared: &Shared) -> Result<Attached, tapwire_tls::TlsError> {
    let mut tracer = Tracer::load(Config::default())?;
    tracer.exclude_process(std::process::id())?;
    scan(&mut tracer, &shared.metrics);
    shared.metrics.tls_tracing.set(1);
    Ok(Attached {
        tracer,
        feed: Feed::new(),
        pipe: Pipeline::new(shared.pipeline.clone()),
        mirror: Mirror::default(),
        seen: Default::default(),
        last_scan: Instant::now(),
    })
}

/// Detach everything (dropping the tracer detaches its probes), keeping the counts.
fn detach(mut a: Attached, shared: &Shared) {
    account(&mut a, &shared.metrics);
    shared.metrics.tls_tracing.set(0);
    shared.metrics.tls_libraries.set(0);
}

/// Attach to the libssl files not attached yet, detach from those no process maps any more.
/// A file without `SSL_*` exports (a stub) or whose processes exited is skipped; the next scan
/// tries again.
fn scan(tracer: &mut Tracer, m: &Metrics) {
    let report = tracer.sync(&discover::scan(Path::new("/proc")));
    m.tls_libraries
        .set(i64::try_from(tracer.attached()).unwrap_or(i64::MAX));
    m.tls_libraries_over_cap
        .set(i64::try_from(report.over_cap).unwrap_or(i64::MAX));
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
    for (counter, outcome, now, before) in rows {
        if now > before {
            counter.with_label_values(&[outcome]).inc_by(now - before);
        }
    }
    a.seen = (c, f);
}
