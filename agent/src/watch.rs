//! `tapwire watch`: subscribe to a running agent and print its exchanges live: a table on a
//! terminal (errors in red), NDJSON when piped. Ends when the agent closes the stream (exit 0)
//! or cannot be reached (one line naming the URL, exit 2).

use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::process::ExitCode;

use crate::cli::WatchArgs;

pub fn run(args: WatchArgs) -> ExitCode {
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
    let table = io::stdout().is_terminal();
    let reader = BufReader::new(resp.into_body().into_reader());
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut line = String::new();
    for raw in reader.lines() {
        let Ok(raw) = raw else { break };
        if raw.starts_with("{\"notice\"") {
            eprintln!("tapwire: {raw}");
            continue;
        }
        let written = if table {
            match serde_json::from_str::<schemas::Exchange>(&raw) {
                Ok(ex) => {
                    line.clear();
                    crate::dissect::table_line(&ex, &mut line);
                    let error = !matches!(ex.status, schemas::Status::Ok);
                    if error {
                        writeln!(out, "\x1b[31m{line}\x1b[0m")
                    } else {
                        writeln!(out, "{line}")
                    }
                }
                Err(_) => writeln!(out, "{raw}"),
            }
        } else {
            writeln!(out, "{raw}").and_then(|_| out.flush())
        };
        if written.is_err() {
            // The reader went away (a closed pipe): stop quietly.
            return ExitCode::SUCCESS;
        }
    }
    ExitCode::SUCCESS
}
