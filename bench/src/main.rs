//! `gen-capture OUT.pcap [HTTP_EXCHANGES] [DNS_EVERY] [SEED]`: the HTTP/1 capture (long
//! keep-alive connections and DNS lookups).
//! `gen-capture --mix OUT.pcap [FLOWS] [SEED]`: the eight-protocol mix of short connections.
//! `gen-capture --open OUT.pcap [FLOWS] [SEED]`: HTTP/1 connections left open mid-response
//! (what an open flow costs).
//! `gen-capture --syn-flood OUT.pcap [SYNS] [SEED]`: SYNs from distinct clients, none
//! answered (memory under a SYN flood).

use std::io::BufWriter;
use std::process::ExitCode;

use tapwire_bench::{
    GenConfig, MixConfig, WEIGHTS, generate, generate_mix, generate_open, generate_syn_flood,
};

const USAGE: &str = "usage: gen-capture OUT.pcap [HTTP_EXCHANGES] [DNS_EVERY] [SEED] | gen-capture --mix|--open|--syn-flood OUT.pcap [N] [SEED]";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.first().map(String::as_str) {
        Some(m @ ("--mix" | "--open" | "--syn-flood")) => {
            let m = m.to_string();
            args.remove(0);
            m
        }
        _ => String::new(),
    };
    let mix = !mode.is_empty();
    let Some(out) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let num = |i: usize, d: u64| -> Result<u64, String> {
        args.get(i)
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|e| format!("argument {} ({s}): {e}", i + 1))
            })
            .unwrap_or(Ok(d))
    };
    let nums = if mix {
        [num(1, 200_000), num(2, 7), Ok(0)]
    } else {
        [num(1, 1_200_000), num(2, 3), num(3, 7)]
    };
    let [Ok(a), Ok(b), Ok(c)] = nums else {
        for e in nums.into_iter().filter_map(Result::err) {
            eprintln!("gen-capture: {e}");
        }
        return ExitCode::from(2);
    };
    let file = match std::fs::File::create(&out) {
        Ok(f) => BufWriter::with_capacity(1 << 20, f),
        Err(e) => {
            eprintln!("gen-capture: {out}: {e}");
            return ExitCode::from(2);
        }
    };
    let res = if mode == "--syn-flood" {
        generate_syn_flood(file, a, b).map(|s| {
            format!(
                "{out}: {} packets, {} bytes, {} SYNs from distinct clients",
                s.packets, s.bytes, s.connections
            )
        })
    } else if mode == "--open" {
        generate_open(file, a, b).map(|s| {
            format!(
                "{out}: {} packets, {} bytes, {} connections left open mid-response",
                s.packets, s.bytes, s.connections
            )
        })
    } else if mix {
        let cfg = MixConfig {
            flows: a,
            concurrency: 1000,
            seed: b,
        };
        generate_mix(file, &cfg).map(|s| {
            let per: Vec<String> = WEIGHTS
                .iter()
                .zip(s.flows.iter().zip(s.exchanges))
                .map(|((p, _), (f, e))| format!("{p:?} {f} flows/{e} exchanges"))
                .collect();
            format!(
                "{out}: {} packets, {} bytes; {}",
                s.packets,
                s.bytes,
                per.join(", ")
            )
        })
    } else {
        let cfg = GenConfig {
            http_exchanges: a,
            dns_every: b,
            concurrency: 2000,
            seed: c,
        };
        generate(file, &cfg).map(|s| {
            format!(
                "{out}: {} packets, {} bytes, {} HTTP exchanges, {} DNS lookups, {} connections",
                s.packets, s.bytes, s.http_exchanges, s.dns_lookups, s.connections
            )
        })
    };
    match res {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-capture: {out}: {e}");
            ExitCode::from(1)
        }
    }
}
