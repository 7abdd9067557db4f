//! `tapwire watch`: subscribe to a running agent and print its exchanges live: a table on a
//! terminal (errors in red), NDJSON when piped. Ends when the agent closes the stream (exit 0)
//! or cannot be reached (one line naming the URL, exit 2). With `--cluster`, every agent in
//! the cluster at once ([`crate::k8s::cluster`]).

use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::process::ExitCode;

use crate::cli::WatchArgs;

pub fn run(args: WatchArgs) -> ExitCode {
    if args.cluster {
        return crate::k8s::cluster::run(&args);
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
    let mut printer = Printer::new();
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

/// Prints event lines: a table row on a terminal (errors in red), the line as is otherwise.
pub struct Printer {
    table: bool,
    out: io::StdoutLock<'static>,
    line: String,
}

impl Printer {
    pub fn new() -> Printer {
        Printer {
            table: io::stdout().is_terminal(),
            out: io::stdout().lock(),
            line: String::new(),
        }
    }

    /// Print one event line; false once stdout is gone (a closed pipe: stop quietly).
    pub fn print(&mut self, raw: &str) -> bool {
        let written = if self.table {
            match serde_json::from_str::<schemas::Exchange>(raw) {
                Ok(ex) => {
                    self.line.clear();
                    crate::dissect::table_line(&ex, &mut self.line);
                    if matches!(ex.status, schemas::Status::Ok) {
                        writeln!(self.out, "{}", self.line)
                    } else {
                        writeln!(self.out, "\x1b[31m{}\x1b[0m", self.line)
                    }
                }
                Err(_) => writeln!(self.out, "{raw}"),
            }
        } else {
            writeln!(self.out, "{raw}").and_then(|_| self.out.flush())
        };
        written.is_ok()
    }
}
