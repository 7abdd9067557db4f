//! Golden tests: the events of real captures must match the checked-in ndjson exactly.
//!
//! - `tests/golden/corpus/<dir>/<name>.ndjson`: expected events of `../shared/corpus/<dir>/<name>.*`
//!   (read in place; skipped visibly when `../shared` is absent);
//! - `tests/golden/<protocol>/<case>.pcap` + `.ndjson`: the project's own captures, recorded
//!   from real servers by `integration/record.sh` (always run).
//!
//! After a deliberate change, regenerate with `TAPWIRE_BLESS=1 cargo test -p tapwire-pipeline
//! --test golden` and review the diff. How each expectation was checked against tshark and
//! the peers' expected output is in `tests/golden/README.md`.

mod common;

use std::path::{Path, PathBuf};

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check(capture: &Path, expected: &Path) -> Result<(), String> {
    let (events, _) = common::dissect(&[capture.to_path_buf()]);
    let got = common::ndjson(&events);
    if std::env::var_os("TAPWIRE_BLESS").is_some() {
        std::fs::create_dir_all(expected.parent().unwrap()).unwrap();
        std::fs::write(expected, &got).unwrap();
        return Ok(());
    }
    let want = std::fs::read_to_string(expected)
        .map_err(|e| format!("{}: {e} (bless to create it)", expected.display()))?;
    if got == want {
        return Ok(());
    }
    let (g, w): (Vec<_>, Vec<_>) = (got.lines().collect(), want.lines().collect());
    let first = g
        .iter()
        .zip(&w)
        .position(|(a, b)| a != b)
        .unwrap_or(g.len().min(w.len()));
    Err(format!(
        "{}: {} events, expected {}; first difference at event {}:\n  got:  {}\n  want: {}",
        capture.display(),
        g.len(),
        w.len(),
        first + 1,
        g.get(first).unwrap_or(&"(none)"),
        w.get(first).unwrap_or(&"(none)")
    ))
}

#[test]
fn corpus_goldens() {
    let Some(corpus) = common::corpus() else {
        common::skip("../shared/corpus is absent: corpus golden tests not run");
        return;
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in [
        "http1", "dns", "edge", "redis", "amqp", "kafka", "http2", "grpc",
    ] {
        for cap in common::captures_under(&corpus.join(dir)) {
            let rel = cap.strip_prefix(&corpus).unwrap().with_extension("ndjson");
            let expected = golden_root().join("corpus").join(rel);
            checked += 1;
            if let Err(e) = check(&cap, &expected) {
                failures.push(e);
            }
        }
    }
    assert!(checked > 40, "only {checked} corpus captures found");
    assert!(
        failures.is_empty(),
        "{} golden mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn own_fixture_goldens() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for cap in common::captures_under(&golden_root()) {
        if cap.starts_with(golden_root().join("corpus")) {
            continue;
        }
        checked += 1;
        if let Err(e) = check(&cap, &cap.with_extension("ndjson")) {
            failures.push(e);
        }
    }
    assert!(
        checked >= 2,
        "the recorded fixtures are missing ({checked} found)"
    );
    assert!(
        failures.is_empty(),
        "{} golden mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
