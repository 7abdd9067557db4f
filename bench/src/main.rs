//! `gen-capture OUT.pcap [HTTP_EXCHANGES] [DNS_EVERY] [SEED]`: write a benchmark capture.

use std::io::BufWriter;
use std::process::ExitCode;

use tapwire_bench::{GenConfig, generate};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(out) = args.get(1) else {
        eprintln!("usage: gen-capture OUT.pcap [HTTP_EXCHANGES] [DNS_EVERY] [SEED]");
        return ExitCode::from(2);
    };
    let num = |i: usize, d: u64| -> Result<u64, String> {
        args.get(i)
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|e| format!("argument {i} ({s}): {e}"))
            })
            .unwrap_or(Ok(d))
    };
    let cfg = match (num(2, 1_200_000), num(3, 3), num(4, 7)) {
        (Ok(h), Ok(d), Ok(s)) => GenConfig {
            http_exchanges: h,
            dns_every: d,
            concurrency: 2000,
            seed: s,
        },
        (a, b, c) => {
            for e in [a.err(), b.err(), c.err()].into_iter().flatten() {
                eprintln!("gen-capture: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let file = match std::fs::File::create(out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gen-capture: {out}: {e}");
            return ExitCode::from(2);
        }
    };
    match generate(BufWriter::with_capacity(1 << 20, file), &cfg) {
        Ok(s) => {
            println!(
                "{out}: {} packets, {} bytes, {} HTTP exchanges, {} DNS lookups, {} connections",
                s.packets, s.bytes, s.http_exchanges, s.dns_lookups, s.connections
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-capture: {out}: {e}");
            ExitCode::from(1)
        }
    }
}
