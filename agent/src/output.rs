//! How exchanges are shown: NDJSON lines (one serialiser, `sinks::json_line`, shared with
//! the Kafka sink, subscribers and replays), server-sent-events framing of those lines for
//! `/v1/events`, and the readable table of `tapwire dissect --format table` and `tapwire
//! watch` on a terminal.

use std::io::{self, IsTerminal, Write};

use bytes::Bytes;
use schemas::{Exchange, Status};

/// An NDJSON line (with its newline) framed as one server-sent event: `data: …` and a blank
/// line.
pub fn sse_frame(line: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(line.len() + 8);
    v.extend_from_slice(b"data: ");
    v.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
    v.extend_from_slice(b"\n\n");
    Bytes::from(v)
}

/// One readable line: time, protocol, peers, what was asked, what came back, duration.
pub fn table_line(ex: &Exchange, s: &mut String) {
    use std::fmt::Write as _;
    let secs = ex.start_time_unix_nano / 1_000_000_000;
    let micros = (ex.start_time_unix_nano % 1_000_000_000) / 1000;
    let (h, m, sec) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let dur_ms = ex
        .end_time_unix_nano
        .saturating_sub(ex.start_time_unix_nano) as f64
        / 1e6;
    let _ = write!(
        s,
        "{h:02}:{m:02}:{sec:02}.{micros:06}  {:<5} {}:{} -> {}:{}  ",
        ex.protocol.as_str(),
        ex.client.address,
        ex.client.port,
        ex.server.address,
        ex.server.port
    );
    if let Some(http) = &ex.http {
        let path = ex
            .url
            .as_ref()
            .and_then(|u| u.path.as_deref())
            .unwrap_or("?");
        let query = ex
            .url
            .as_ref()
            .and_then(|u| u.query.as_deref())
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let status = http
            .response
            .as_ref()
            .and_then(|r| r.status_code)
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into());
        let method = http.request.method.as_deref().unwrap_or("?");
        let _ = write!(s, "{method} {path}{query} -> {status}");
        if let Some(m) = ex.rpc.as_ref().and_then(|r| r.method.as_deref()) {
            let code = ex.rpc.as_ref().and_then(|r| r.response.as_ref());
            let _ = write!(
                s,
                " grpc {m} {}",
                code.map_or("-", |c| c.status_code.as_str())
            );
        }
        if let Some(g) = &ex.graphql {
            let _ = write!(
                s,
                " graphql {} {}",
                g.operation.kind.as_deref().unwrap_or("?"),
                g.operation.name.as_deref().unwrap_or("-")
            );
        }
    } else if let Some(dns) = &ex.dns {
        let (name, qtype) = dns
            .question
            .as_ref()
            .map(|q| (q.name.as_str(), q.qtype.as_str()))
            .unwrap_or(("?", "?"));
        let _ = write!(
            s,
            "{qtype} {name} -> {} ({} answers)",
            dns.response_code.as_deref().unwrap_or("-"),
            dns.answers.len()
        );
    } else if let Some(db) = &ex.db {
        let query = db
            .query
            .as_ref()
            .map(|q| q.text.as_str())
            .or(db.operation.as_ref().map(|o| o.name.as_str()))
            .unwrap_or("?");
        let reply = match (
            &db.response,
            ex.redis.as_ref().and_then(|r| r.response.as_ref()),
        ) {
            (Some(err), _) => err.status_code.as_str(),
            (None, Some(r)) => r.rtype.as_str(),
            (None, None) => "-",
        };
        let _ = write!(s, "{query} -> {reply}");
    } else if let Some(k) = &ex.kafka {
        let _ = write!(
            s,
            "{} v{} {}",
            k.api_name,
            k.api_version,
            k.topics.join(",")
        );
        if let Some(code) = k.error_code {
            let _ = write!(s, " -> error {code}");
        }
    } else if let Some(m) = &ex.messaging {
        let op = m.operation.as_ref().map(|o| o.name.as_str()).unwrap_or("?");
        let dest = m
            .destination
            .as_ref()
            .map(|d| d.name.as_str())
            .unwrap_or("");
        let _ = write!(s, "{op} {dest}");
        if let Some(code) = ex.amqp.as_ref().and_then(|a| a.reply_code) {
            let _ = write!(s, " -> {code}");
        }
    }
    let status = match ex.status {
        Status::Ok => "ok",
        Status::Error => "error",
        Status::NoResponse => "no_response",
        Status::Incomplete => "incomplete",
    };
    let _ = writeln!(s, "  {dur_ms:.3}ms {status}");
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
                    table_line(&ex, &mut self.line);
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
