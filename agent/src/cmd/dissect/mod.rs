//! `tapwire dissect`: offline dissection of capture files.
//!
//! One pipeline on this thread with `--workers 1`; otherwise `workers.rs` spreads the flows
//! over one pipeline per worker thread and merges their lines back.
//!
//! Exit status: 0 when every file was read (a file cut short mid-record is used as far as it
//! goes, with one warning); 2 when any file could not be read (not a capture, unreadable,
//! unknown link type); the other files are still processed. A closed stdout (e.g. `| head`)
//! ends the run quietly.

use std::cell::Cell;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipeline::decode::LinkType;
use pipeline::source::{self, FileSummary, SourceError};
use pipeline::{Pipeline, Stats};
use schemas::Exchange;

use crate::cli::{DissectArgs, Format};
use crate::spool::plaintext;

mod workers;

/// A reader that counts the bytes read through it (for the progress bar).
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Turns exchanges into output lines: the filter first, then NDJSON or a table line. Each
/// worker has its own (a compiled filter is not shared between threads).
pub(super) struct Render {
    format: Format,
    filter: Option<crate::filter::Filter>,
    line: String,
}

impl Render {
    fn new(format: Format, filter: Option<&str>) -> Result<Render, crate::filter::FilterError> {
        Ok(Render {
            format,
            filter: filter.map(crate::filter::Filter::compile).transpose()?,
            line: String::new(),
        })
    }

    /// Append `ex`'s line to `out`; false (nothing appended) when the filter refuses it.
    fn render(&mut self, ex: &Exchange, out: &mut Vec<u8>) -> bool {
        if self.filter.as_ref().is_some_and(|f| !f.matches_event(ex)) {
            return false;
        }
        match self.format {
            Format::Ndjson => {
                let at = out.len();
                if let Err(e) = schemas::text::write_json_line(ex, out) {
                    // Not reachable with the schema's types (string keys only); said once
                    // per event rather than lost silently.
                    eprintln!("tapwire: cannot write an exchange as JSON: {e}");
                    out.truncate(at);
                    return false;
                }
            }
            Format::Table => {
                self.line.clear();
                schemas::text::table_line(ex, &mut self.line);
                out.extend_from_slice(self.line.as_bytes());
            }
        }
        true
    }
}

/// Where the lines go: stdout, until it closes.
pub(super) struct Output<W: Write> {
    w: W,
    closed: bool,
}

impl<W: Write> Output<W> {
    /// Write lines; a closed pipe ends the output quietly, another error is said once.
    fn write_all(&mut self, bytes: &[u8]) {
        if self.closed || bytes.is_empty() {
            return;
        }
        if let Err(e) = self.w.write_all(bytes) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("tapwire: cannot write output: {e}");
            }
            self.closed = true;
        }
    }
}

fn progress_bar(path: &Path) -> Option<ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let len = std::fs::metadata(path).ok()?.len();
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .ok()?
        .progress_chars("=> "),
    );
    pb.set_message(path.display().to_string());
    Some(pb)
}

/// Read one capture file, handing each frame to `each`, with a progress bar on a terminal.
fn read_file(
    path: &Path,
    mut each: impl FnMut(&source::Frame<'_>),
) -> Result<FileSummary, SourceError> {
    let file = source::open(path)?;
    let count = Rc::new(Cell::new(0u64));
    // No BufReader: the capture parser keeps its own large buffer and reads into it.
    let reader = Counting {
        inner: file,
        count: count.clone(),
    };
    let pb = progress_bar(path);
    let started = Instant::now();
    let mut shown = false;
    let mut n = 0u64;
    let res = source::read(reader, path, |frame| {
        each(&frame);
        n += 1;
        if n.is_multiple_of(8192)
            && let Some(pb) = &pb
        {
            if !shown && started.elapsed() > Duration::from_secs(1) {
                pb.set_draw_target(ProgressDrawTarget::stderr());
                shown = true;
            }
            pb.set_position(count.get());
        }
    });
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    res
}

/// Say what went wrong with one file; true when it counts as a failure (exit status 2).
fn report(path: &Path, res: Result<FileSummary, SourceError>) -> bool {
    match res {
        Ok(sum) => {
            if sum.cut_short {
                eprintln!(
                    "tapwire: warning: {}: capture cut short mid-record after {} packets; used what is there",
                    path.display(),
                    sum.packets
                );
            }
            for lt in &sum.unknown_linktypes {
                eprintln!(
                    "tapwire: {}: unsupported link type {lt} on an interface; its {} packets skipped",
                    path.display(),
                    sum.skipped_unknown_link
                );
            }
            !sum.unknown_linktypes.is_empty()
        }
        Err(e) => {
            eprintln!("tapwire: {e}");
            true
        }
    }
}

/// A TLS plaintext record (a `tapwire pcap` export of a spool that holds some) goes in as the
/// stream it was, apart from the encrypted packets of its connection.
fn feed(
    pipe: &mut Pipeline,
    link: LinkType,
    ts: u64,
    data: &[u8],
    orig_len: u32,
    comment: Option<&[u8]>,
    events: &mut Vec<Exchange>,
) {
    match comment.and_then(|c| plaintext::decode(data, c)) {
        Some(r) => pipe.stream(&r.chunk(ts), events),
        None => pipe.packet(link, ts, data, orig_len, events),
    }
}

/// Exchanges of the flows still open at the end turned into lines at a time (without
/// `--sort`, which orders them all by start time).
const FINISH_BATCH: usize = 1024;

/// With `--sort`, what is still open at the end comes out in the order the exchanges started.
fn sort_finished(events: &mut [Exchange]) {
    events.sort_by_key(|e| e.start_time_unix_nano);
}

fn summary(stats: &Stats, flows_open: usize, elapsed: Duration) -> String {
    let d = &stats.decode;
    let f = &stats.flows;
    let r = &f.reassembly;
    let mut s = format!(
        "tapwire: {} packets ({} bytes) in {:.2}s, {} flows, {} exchanges, {} anomalies",
        d.packets,
        d.bytes,
        elapsed.as_secs_f64(),
        f.created,
        stats.exchanges,
        stats.anomalies.total()
    );
    s.push_str(&format!(
        "\n  decode: truncated={} not_ip={} not_tcp_udp={} bad_l4={} fragments={} reassembled={} frag_dropped={}",
        d.truncated, d.not_ip, d.not_tcp_udp, d.bad_l4, d.fragments, d.reassembled, d.frag_dropped
    ));
    s.push_str(&format!(
        "\n  flows: midstream={} opaque={} timed_out={} dissector_errors={} open_at_end={}",
        f.midstream, f.opaque, f.timed_out, f.dissector_errors, flows_open
    ));
    s.push_str(&format!(
        "\n  tcp: retransmitted={} overlapping={} out_of_order={} gaps={} gap_bytes={}",
        r.retransmitted_segments,
        r.overlapping_segments,
        r.out_of_order_segments,
        r.gaps,
        r.gap_bytes
    ));
    s.push_str("\n  drops by cap:");
    for (cap, n) in stats.cap_drops() {
        s.push_str(&format!(" {cap}={n}"));
    }
    s.push_str(&format!(" (defrag errors={})", stats.defrag.errors));
    if !stats.anomalies.0.is_empty() {
        let list: Vec<String> = stats
            .anomalies
            .0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!("\n  anomalies: {}", list.join(" ")));
    }
    s
}

pub fn run(args: DissectArgs) -> ExitCode {
    let started = Instant::now();
    let stdout = io::stdout();
    let render = match Render::new(args.format, args.filter.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tapwire: --filter: {e}");
            return ExitCode::from(2);
        }
    };
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if workers == 0 {
        eprintln!("tapwire: --workers: at least 1");
        return ExitCode::from(2);
    }
    let mut config = pipeline::Config::default();
    if let Some(text) = &args.memory_budget {
        match crate::config::memory_budget(text) {
            Ok(b) => config.flow.memory_budget = b,
            Err(e) => {
                eprintln!("tapwire: --memory-budget: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(path) = &args.proto_descriptor {
        match pipeline::dissect::protobuf::Descriptors::load(path) {
            Ok(d) => config.flow.descriptors = Some(std::sync::Arc::new(d)),
            Err(e) => {
                eprintln!("tapwire: --proto-descriptor: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let mut out = Output {
        w: BufWriter::with_capacity(1 << 16, stdout.lock()),
        closed: false,
    };
    let done = if workers == 1 {
        one_worker(&args, config, render, &mut out)
    } else {
        workers::run(&args, config, workers, &mut out)
    };
    let mut failed = done.failed;
    if let Err(e) = out.w.flush()
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        eprintln!("tapwire: cannot write output: {e}");
        failed = true;
    }
    if !args.quiet {
        eprintln!(
            "{}",
            summary(&done.stats, done.flows_open, started.elapsed())
        );
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// What a run gave: the pipelines' counters, the flows open at the end, whether a file
/// failed.
pub(super) struct Done {
    stats: Stats,
    flows_open: usize,
    failed: bool,
}

/// Every file through one pipeline on this thread.
fn one_worker(
    args: &DissectArgs,
    config: pipeline::Config,
    mut render: Render,
    out: &mut Output<impl Write>,
) -> Done {
    let mut pipe = Pipeline::new(config);
    let mut events = Vec::new();
    let mut buf = Vec::with_capacity(1 << 16);
    let mut failed = false;
    let mut flows_open = 0;
    for path in &args.files {
        let res = read_file(path, |frame| {
            if out.closed {
                return;
            }
            let comment = frame.comment.map(str::as_bytes);
            feed(
                &mut pipe,
                frame.link,
                frame.ts,
                frame.data,
                frame.orig_len,
                comment,
                &mut events,
            );
            for ex in events.drain(..) {
                render.render(&ex, &mut buf);
            }
            // Lines gather in a reused buffer, written once it holds 64 KiB: serde_json
            // writes many small fragments, which a Vec takes more cheaply than a BufWriter.
            if buf.len() >= 1 << 16 {
                out.write_all(&buf);
                buf.clear();
            }
        });
        failed |= report(path, res);
        if out.closed {
            break;
        }
    }
    if !out.closed {
        flows_open = pipe.flows();
        if args.sort {
            pipe.finish(&mut events);
            sort_finished(&mut events);
        } else {
            // Flows still open are closed in batches, written as they come.
            pipe.finish_each(&mut events, FINISH_BATCH, |evs| {
                for ex in evs.drain(..) {
                    render.render(&ex, &mut buf);
                }
                if buf.len() >= 1 << 16 {
                    out.write_all(&buf);
                    buf.clear();
                }
            });
        }
        for ex in events.drain(..) {
            render.render(&ex, &mut buf);
        }
        out.write_all(&buf);
    }
    Done {
        stats: pipe.stats(),
        flows_open,
        failed,
    }
}
