//! Shared helpers for the pipeline's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pipeline::{Pipeline, Stats};
use schemas::Exchange;

/// `../shared/corpus` next to the checkout, when present (a user's clone has none).
pub fn corpus() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    p.is_dir().then(|| p.canonicalize().unwrap_or(p))
}

/// Say visibly that a test did not run its checks.
pub fn skip(why: &str) {
    eprintln!("SKIP: {why}");
    println!("SKIP: {why}");
}

/// Dissect capture files as one capture; returns the events and the counters.
pub fn dissect(files: &[PathBuf]) -> (Vec<Exchange>, Stats) {
    let mut pipe = Pipeline::default();
    let mut out = Vec::new();
    for f in files {
        let _ = pipeline::source::read_file(f, |fr| {
            pipe.packet(fr.link, fr.ts, fr.data, fr.orig_len, &mut out)
        });
    }
    pipe.finish(&mut out);
    let stats = pipe.stats();
    (out, stats)
}

/// Events as ndjson text.
pub fn ndjson(events: &[Exchange]) -> String {
    let mut s = String::new();
    for e in events {
        s.push_str(&serde_json::to_string(e).expect("serialise"));
        s.push('\n');
    }
    s
}

/// Capture files (pcap, pcapng) under `dir`, recursively, sorted.
pub fn captures_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("pcap" | "pcapng")
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
