//! How exchanges are shown: server-sent-events framing of NDJSON lines for `/v1/events`,
//! and the terminal printer of `tapwire watch` (table rows, errors in red). Both text forms
//! of an event, its NDJSON line and its table line, come from `schemas::text`.

use std::io::{self, IsTerminal, Write};

use bytes::Bytes;

/// An NDJSON line (with its newline) framed as one server-sent event: `data: …` and a blank
/// line.
pub fn sse_frame(line: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(line.len() + 8);
    v.extend_from_slice(b"data: ");
    v.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
    v.extend_from_slice(b"\n\n");
    Bytes::from(v)
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
                    schemas::text::table_line(&ex, &mut self.line);
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
