//! `tapwire watch`: subscribe to a running agent and print its exchanges live: a table on a
//! terminal (errors in red), NDJSON when piped. Ends when the agent closes the stream (exit 0)
//! or cannot be reached (one line naming the URL, exit 2). With `--cluster`, every agent in
//! the cluster at once ([`super::cluster`]).

use std::io::{BufRead, BufReader};
use std::process::ExitCode;

use crate::cli::WatchArgs;

pub fn run(args: WatchArgs) -> ExitCode {
    if args.cluster {
        return super::cluster::run(&args);
    }
    let query = [
        ("filter", args.filter.as_deref()),
        ("since", args.since.as_deref()),
    ];
    let resp = match crate::client::get(&args.agent, "/v1/events", &query) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tapwire: {e}");
            return ExitCode::from(2);
        }
    };
    let reader = BufReader::new(resp.into_body().into_reader());
    let mut printer = crate::output::Printer::new();
    for raw in reader.lines() {
        let Ok(raw) = raw else { break };
        if raw.starts_with("{\"notice\"") {
            eprintln!("tapwire: {raw}");
            continue;
        }
        if !printer.print(&raw) {
            break;
        }
    }
    ExitCode::SUCCESS
}
