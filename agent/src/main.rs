//! `tapwire`: the node agent and its command-line tools.

mod api;
mod capture;
mod cli;
mod client;
mod cmd;
mod config;
mod demand;
mod filter;
mod k8s;
mod metrics;
mod output;
mod replay;
mod sink_stage;
mod spool;
#[cfg(feature = "tls")]
mod tls_source;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc malloc: exchanges are allocated on a capture worker and freed on
/// a sink's thread, and glibc serialises such frees on the worker's arena lock (the worker
/// waited on it; see bench/sinks.sh).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process. mimalloc asks for them on its arenas; then every
/// purge of a freed range leaves a hole that the next allocation faults back in as a whole
/// 2 MiB page, zeroed: 45% of the agent's CPU while the TLS source moved 16 KiB chunks at
/// 120 MiB/s (perf, bench/tls.sh's bulk run), and none of it without them (2.6 instead of
/// 4.4–5.7 ms per MiB; offline dissection unchanged, its peak RSS 25% lower). The prctl
/// covers systems whose THP mode is `always` too, where no madvise is needed for them.
fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with status 0; usage errors are one line + exit 2.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        // The pipeline runs on a thread with the stack every pipeline gets (not whatever the
        // main thread was given by `ulimit -s`).
        cli::Command::Dissect(args) => std::thread::Builder::new()
            .name("tapwire-dissect".into())
            .stack_size(capture::PIPELINE_STACK)
            .spawn(move || cmd::dissect::run(args))
            .map_or_else(
                |e| {
                    eprintln!("tapwire: cannot start the pipeline thread: {e}");
                    ExitCode::from(1)
                },
                |h| h.join().unwrap_or(ExitCode::from(1)),
            ),
        cli::Command::Run(args) => cmd::run::run(args),
        cli::Command::Watch(args) => cmd::watch::run(args),
        cli::Command::Pcap(args) => cmd::pcap::run(args),
    }
}
