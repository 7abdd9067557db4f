//! Command-line interface (architecture.md section 5).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "tapwire",
    version,
    about = "Network sniffer for Kubernetes: capture, spool and dissect HTTP, DNS and more"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read pcap/pcapng files and print the request/response exchanges in them.
    Dissect(DissectArgs),
}

/// Output format of `dissect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON event per line (the event contract's shape).
    Ndjson,
    /// One readable line per exchange.
    Table,
}

#[derive(Debug, clap::Args)]
pub struct DissectArgs {
    /// Capture files (pcap or pcapng), read in order as one capture.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Ndjson)]
    pub format: Format,
    /// Do not print the summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Protobuf descriptor set (`protoc --include_imports --descriptor_set_out=FILE`): decode
    /// gRPC messages of the services it describes to JSON.
    #[arg(long, value_name = "FILE")]
    pub proto_descriptor: Option<PathBuf>,
}
