//! `tapwire dissect`: offline dissection of capture files.
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
use pipeline::source::{self, FileSummary, SourceError};
use pipeline::{Pipeline, Stats};
use schemas::Exchange;

use crate::cli::{DissectArgs, Format};
use crate::spool::plaintext;

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

struct Output<W: Write> {
    w: W,
    format: Format,
    filter: Option<crate::filter::Filter>,
    closed: bool,
    line: String,
    buf: Vec<u8>,
}

impl<W: Write> Output<W> {
    fn write(&mut self, events: &mut Vec<Exchange>) {
        for ex in events.drain(..) {
            if self.closed || self.filter.as_ref().is_some_and(|f| !f.matches_event(&ex)) {
                continue;
            }
            let res = match self.format {
                Format::Ndjson => {
                    // Serialise into a reused buffer, then one write: serde_json writes many
                    // small fragments, and a Vec takes them more cheaply than a BufWriter.
                    self.buf.clear();
                    match schemas::text::write_json_line(&ex, &mut self.buf) {
                        Ok(()) => self.w.write_all(&self.buf),
                        Err(e) => Err(io::Error::from(e)),
                    }
                }
                Format::Table => {
                    self.line.clear();
                    schemas::text::table_line(&ex, &mut self.line);
                    self.w.write_all(self.line.as_bytes())
                }
            };
            if let Err(e) = res {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    eprintln!("tapwire: cannot write output: {e}");
                }
                self.closed = true;
            }
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

fn read_one(
    path: &Path,
    pipe: &mut Pipeline,
    out: &mut Output<impl Write>,
    events: &mut Vec<Exchange>,
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
        // A TLS plaintext record (a `tapwire pcap` export of a spool that holds some) goes in
        // as the stream it was, apart from the encrypted packets of its connection.
        match frame
            .comment
            .and_then(|c| plaintext::decode(frame.data, c.as_bytes()))
        {
            Some(r) => pipe.stream(&r.chunk(frame.ts), events),
            None => pipe.packet(frame.link, frame.ts, frame.data, frame.orig_len, events),
        }
        if !events.is_empty() {
            out.write(events);
        }
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
    let filter = match args.filter.as_deref().map(crate::filter::Filter::compile) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            eprintln!("tapwire: --filter: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = Output {
        w: BufWriter::with_capacity(1 << 16, stdout.lock()),
        format: args.format,
        filter,
        closed: false,
        line: String::new(),
        buf: Vec::with_capacity(4096),
    };
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
    let mut pipe = Pipeline::new(config);
    let mut events = Vec::new();
    let mut failed = false;
    let mut flows_open = 0;
    for path in &args.files {
        match read_one(path, &mut pipe, &mut out, &mut events) {
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
                    failed = true;
                }
            }
            Err(e) => {
                eprintln!("tapwire: {e}");
                failed = true;
            }
        }
        if out.closed {
            break;
        }
    }
    if !out.closed {
        flows_open = pipe.flows();
        pipe.finish(&mut events);
        out.write(&mut events);
    }
    if let Err(e) = out.w.flush()
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        eprintln!("tapwire: cannot write output: {e}");
        failed = true;
    }
    if !args.quiet {
        eprintln!("{}", summary(&pipe.stats(), flows_open, started.elapsed()));
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
