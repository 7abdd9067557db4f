//! `tapwire`: the node agent and its command-line tools.

mod api;
mod capture;
mod cli;
mod client;
mod config;
mod demand;
mod dissect;
mod filter;
mod metrics;
mod pcap_cmd;
mod replay;
mod run;
mod sinks;
mod spool;
mod watch;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
        cli::Command::Dissect(args) => dissect::run(args),
        cli::Command::Run(args) => run::run(args),
        cli::Command::Watch(args) => watch::run(args),
        cli::Command::Pcap(args) => pcap_cmd::run(args),
    }
}
