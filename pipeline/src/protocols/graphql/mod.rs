//! GraphQL over HTTP: refines finished HTTP/1 and HTTP/2 exchanges that carry an operation.
//!
//! Recognised requests (GraphQL over HTTP): `GET` with `?query=` (and `operationName`,
//! `extensions`), a `POST` body of `application/graphql` (the document), or a JSON body
//! holding `query` and/or `extensions.persistedQuery` (an object, or a batch array of them).
//! The document is parsed with `graphql-parser` for the operation's type and name: the one
//! `operationName` selects, else the only one. The response's `errors` array is counted (a
//! batch sums them) and makes the exchange an `error`, even on HTTP 200.
//!
//! Variables are never read into the event (they can hold secrets), nor is the document.
//! Limits: the body is what the HTTP dissector kept (`body::MAX_KEPT_BODY`, decoded under
//! `body::MAX_DECODED_BODY`); a document nested deeper than [`MAX_DEPTH`] is not parsed
//! (`graphql.too_deep`). The parser recurses per bracket; it stops at 50 levels by itself,
//! and this scan, which follows its tokens (strings, block strings, comments), keeps the
//! bound ours rather than a dependency's. An unparsable document is the anomaly
//! `graphql.parse_error`; the request is still GraphQL (ARCHITECTURE.md §4: a server rejects a
//! broken document, and that failure is a GraphQL one) when the document starts like one (a
//! `query`, `mutation` or `subscription` keyword, whose type and name are taken from it, or a
//! `{`, a query) or the response is a GraphQL result (a JSON object with `data` or `errors`).
//! Otherwise it stays an `http` exchange: `GET /search?query=shoes` is not GraphQL.

use graphql_parser::query::{Definition, OperationDefinition};
use schemas::l7::graphql::{Batch, Errors, Graphql, Operation, PersistedQuery};
use schemas::{Exchange, Protocol, Status};
use serde_json::Value;

use crate::dissect::Emitter;
use crate::dissect::http_fields::BodySource;

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        AmbiguousOperation = "graphql.ambiguous_operation",
        ParseError = "graphql.parse_error",
        TooDeep = "graphql.too_deep",
    }
}

/// Deepest bracket nesting of a document that is parsed (graphql-parser's own limit).
pub const MAX_DEPTH: usize = 50;

/// What the HTTP dissector knows of a finished exchange.
pub struct HttpParts<'a> {
    pub method: Option<&'a str>,
    pub query: Option<&'a str>,
    pub request_type: Option<&'a str>,
    /// Request body (decoded only for a request that may be GraphQL).
    pub request_body: BodySource<'a>,
    /// Response body (decoded only for a GraphQL request's response).
    pub response_body: BodySource<'a>,
}

/// One operation as the request names it.
struct Request {
    document: Option<String>,
    operation_name: Option<String>,
    hash: Option<String>,
}

impl Request {
    fn from_json(v: &Value) -> Option<Request> {
        let o = v.as_object()?;
        let document = o.get("query").and_then(Value::as_str).map(str::to_string);
        let hash = o
            .get("extensions")
            .and_then(|e| e.get("persistedQuery"))
            .and_then(|p| p.get("sha256Hash"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if document.is_none() && hash.is_none() {
            return None;
        }
        Some(Request {
            document,
            operation_name: o
                .get("operationName")
                .and_then(Value::as_str)
                .map(str::to_string),
            hash,
        })
    }
}

/// The GraphQL requests an HTTP request carries (more than one for a batch).
fn requests(p: &HttpParts<'_>) -> Option<Vec<Request>> {
    let media = p.request_type.map(|t| {
        t.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if p.method == Some("GET") {
        let q = p.query?;
        let mut r = Request {
            document: None,
            operation_name: None,
            hash: None,
        };
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match k.as_ref() {
                "query" => r.document = Some(v.into_owned()),
                "operationName" => r.operation_name = Some(v.into_owned()),
                "extensions" => {
                    r.hash = serde_json::from_str::<Value>(&v).ok().and_then(|e| {
                        e.get("persistedQuery")?
                            .get("sha256Hash")?
                            .as_str()
                            .map(str::to_string)
                    })
                }
                _ => {}
            }
        }
        return (r.document.is_some() || r.hash.is_some()).then(|| vec![r]);
    }
    let graphql = media.as_deref() == Some("application/graphql");
    if !graphql && !media.as_deref().is_some_and(|m| m.contains("json")) {
        return None;
    }
    let body = p.request_body.decoded()?;
    if graphql {
        return Some(vec![Request {
            document: Some(String::from_utf8_lossy(&body).into_owned()),
            operation_name: None,
            hash: None,
        }]);
    }
    match serde_json::from_slice::<Value>(&body).ok()? {
        Value::Array(items) if !items.is_empty() => items.iter().map(Request::from_json).collect(),
        v => Request::from_json(&v).map(|r| vec![r]),
    }
}

/// Could this request be GraphQL, so that its response's body is worth keeping? A cheap look
/// before the response arrives, a superset of what [`refine`] accepts: `GET` with a `query` or
/// `extensions` parameter; a GraphQL body; a JSON body that mentions `"query"` or
/// `persistedQuery` (or that cannot be looked at: encoded, cut at the keeping cap, or not all
/// there yet). Any other response body is counted, not kept, which saves its copy and up to
/// `body::MAX_KEPT_BODY` bytes per open flow.
pub fn may_be_request(
    method: &str,
    query: Option<&str>,
    request_type: Option<&str>,
    body: Option<&crate::dissect::body::KeptBody>,
    coding: Option<&str>,
    complete: bool,
) -> bool {
    if method == "GET" {
        return query.is_some_and(|q| q.contains("query=") || q.contains("extensions="));
    }
    let Some(t) = request_type else {
        return false;
    };
    let t = t.to_ascii_lowercase();
    if t.contains("graphql") {
        return true;
    }
    if !t.contains("json") {
        return false;
    }
    let Some(b) = body else {
        return false;
    };
    !complete
        || coding.is_some()
        || b.truncated
        || memchr::memmem::find(&b.bytes, b"\"query\"").is_some()
        || memchr::memmem::find(&b.bytes, b"persistedQuery").is_some()
}

/// Bracket nesting depth of a document (strings and comments skipped).
fn depth(doc: &str) -> usize {
    // The same tokens as graphql-parser's lexer: `#` comments to the end of the line, block
    // strings from `"""` to the next `"""` not preceded by `\`, strings with `\` escapes that
    // end at `"` (a newline or the end leaves them unterminated: the parser stops there).
    let b = doc.as_bytes();
    let (mut d, mut max, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                let tail = &doc[i + 3..];
                let close = tail
                    .match_indices("\"\"\"")
                    .find(|(at, _)| !tail[..*at].ends_with('\\'));
                match close {
                    Some((at, _)) => i += 3 + at + 2,
                    None => return max,
                }
            }
            b'"' => {
                let mut escaped = false;
                loop {
                    i += 1;
                    match b.get(i) {
                        None | Some(b'\n') => return max,
                        Some(b'"') if !escaped => break,
                        Some(&c) => escaped = !escaped && c == b'\\',
                    }
                }
            }
            b'{' | b'(' | b'[' => {
                d += 1;
                max = max.max(d);
            }
            b'}' | b')' | b']' => d = d.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

/// Why an operation could not be named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpError {
    Parse,
    TooDeep,
    /// Several operations and no (matching) `operationName`.
    Ambiguous,
}

impl OpError {
    fn anomaly(self) -> Anomaly {
        match self {
            OpError::Parse => Anomaly::ParseError,
            OpError::TooDeep => Anomaly::TooDeep,
            OpError::Ambiguous => Anomaly::AmbiguousOperation,
        }
    }
}

/// The selected operation's (type, name).
fn operation(doc: &str, wanted: Option<&str>) -> Result<(String, Option<String>), OpError> {
    if depth(doc) > MAX_DEPTH {
        return Err(OpError::TooDeep);
    }
    let parsed = graphql_parser::parse_query::<&str>(doc).map_err(|_| OpError::Parse)?;
    let ops: Vec<(&str, Option<&str>)> = parsed
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Operation(op) => Some(match op {
                OperationDefinition::SelectionSet(_) => ("query", None),
                OperationDefinition::Query(q) => ("query", q.name),
                OperationDefinition::Mutation(m) => ("mutation", m.name),
                OperationDefinition::Subscription(s) => ("subscription", s.name),
            }),
            Definition::Fragment(_) => None,
        })
        .collect();
    let chosen = match wanted.filter(|w| !w.is_empty()) {
        Some(w) => ops.iter().find(|(_, n)| *n == Some(w)),
        None if ops.len() == 1 => ops.first(),
        None => None,
    };
    chosen
        .map(|(t, n)| (t.to_string(), n.map(str::to_string)))
        .ok_or(OpError::Ambiguous)
}

/// How an unparsable document starts: `Some((type, name))` when it starts like an operation
/// (`{` is an anonymous query; a `query`, `mutation` or `subscription` keyword, and the name
/// after it when there is one), `None` otherwise. Whitespace, commas and `#` comments before
/// it are skipped, as GraphQL's lexer does.
fn leading_operation(doc: &str) -> Option<(Option<&'static str>, Option<&str>)> {
    let mut rest = doc.trim_start_matches('\u{feff}');
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\n', '\r', ',']);
        match rest.strip_prefix('#') {
            Some(comment) => rest = comment.find(['\n', '\r']).map_or("", |i| &comment[i..]),
            None => break,
        }
    }
    if rest.starts_with('{') {
        return Some((Some("query"), None));
    }
    let word = |s: &str| -> usize {
        s.bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or(s.len())
    };
    let end = word(rest);
    let kind = match rest.get(..end)? {
        "query" => "query",
        "mutation" => "mutation",
        "subscription" => "subscription",
        _ => return None,
    };
    let after = rest
        .get(end..)?
        .trim_start_matches([' ', '\t', '\n', '\r', ',']);
    let name = after.get(..word(after)).filter(|n| {
        n.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
    });
    Some((Some(kind), name))
}

/// Whether a response body is a GraphQL result: a JSON object (or a batch of them) with
/// `data` or `errors`.
fn is_graphql_result(body: &[u8]) -> bool {
    let result = |v: &Value| v.get("data").is_some() || v.get("errors").is_some();
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => !items.is_empty() && items.iter().all(result),
        Ok(v @ Value::Object(_)) => result(&v),
        _ => false,
    }
}

/// Entries of `errors` in a response body (an object, or a batch array of objects).
fn error_count(body: &[u8]) -> Option<u64> {
    let count = |v: &Value| {
        v.get("errors")
            .and_then(Value::as_array)
            .map_or(0, |a| a.len() as u64)
    };
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Array(items) => Some(items.iter().map(count).sum()),
        v @ Value::Object(_) => Some(count(&v)),
        _ => None,
    }
}

/// Turn an HTTP exchange into a GraphQL one when its request carries an operation. Returns
/// whether it did.
pub fn refine(ex: &mut Exchange, p: &HttpParts<'_>, out: &mut Emitter<'_>) -> bool {
    let Some(reqs) = requests(p) else {
        return false;
    };
    let Some(first) = reqs.first() else {
        return false;
    };
    let mut op = Operation {
        kind: None,
        name: None,
    };
    if let Some(doc) = &first.document {
        match operation(doc, first.operation_name.as_deref()) {
            Ok((kind, name)) => {
                op.kind = Some(kind);
                op.name = name;
            }
            Err(OpError::Parse) => {
                out.anomaly(OpError::Parse.anomaly());
                ex.add_anomaly(OpError::Parse.anomaly().name());
                let lead = leading_operation(doc);
                let answered = p
                    .response_body
                    .decoded()
                    .is_some_and(|b| is_graphql_result(&b));
                if lead.is_none() && !answered {
                    // Not GraphQL after all: an HTTP exchange with a `query` parameter.
                    return false;
                }
                let (kind, name) = lead.unwrap_or((None, None));
                op.kind = kind.map(str::to_string);
                op.name = first.operation_name.clone().or(name.map(str::to_string));
            }
            Err(e) => {
                out.anomaly(e.anomaly());
                ex.add_anomaly(e.anomaly().name());
                op.name = first.operation_name.clone();
            }
        }
    } else {
        op.name = first.operation_name.clone();
    }
    let errors = p
        .response_body
        .decoded()
        .and_then(|b| error_count(&b))
        .map(|count| Errors { count });
    if errors.as_ref().is_some_and(|e| e.count > 0) && ex.status == Status::Ok {
        ex.status = Status::Error;
    }
    ex.protocol = Protocol::Graphql;
    ex.graphql = Some(Box::new(Graphql {
        operation: op,
        errors,
        persisted_query: first
            .hash
            .clone()
            .map(|sha256_hash| PersistedQuery { sha256_hash }),
        batch: (reqs.len() > 1).then_some(Batch {
            size: reqs.len() as u64,
        }),
    }));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::body::KeptBody;

    #[test]
    fn selects_the_named_operation() {
        let doc = "query A { a } mutation B($x: Int) { b(x: $x) } subscription { c }";
        assert_eq!(
            operation(doc, Some("B")),
            Ok(("mutation".into(), Some("B".into())))
        );
        assert_eq!(operation(doc, None), Err(OpError::Ambiguous));
        assert_eq!(
            operation("{ hero { name } }", None),
            Ok(("query".into(), None))
        );
        assert_eq!(
            operation("fragment F on T { x } query Q { ...F }", None),
            Ok(("query".into(), Some("Q".into())))
        );
        assert_eq!(operation("query {", None), Err(OpError::Parse));
        let deep = format!("{}{}", "{ a ".repeat(200), "}".repeat(200));
        assert_eq!(operation(&deep, None), Err(OpError::TooDeep));
        assert_eq!(depth(r#"{ a(s: "{{{{") # {{{{ }"#), 2);
    }

    #[test]
    fn a_broken_document_is_typed_by_how_it_starts() {
        assert_eq!(
            leading_operation("query Broken { books { id "),
            Some((Some("query"), Some("Broken")))
        );
        assert_eq!(
            leading_operation("\u{feff} # a comment\n , mutation($x: Int) { a(x: $x"),
            Some((Some("mutation"), None))
        );
        assert_eq!(
            leading_operation("  { unclosed"),
            Some((Some("query"), None))
        );
        assert_eq!(
            leading_operation("subscription"),
            Some((Some("subscription"), None))
        );
        for not in [
            "shoes",
            "querying things",
            "fragment F on T { x",
            "",
            "# only",
        ] {
            assert_eq!(leading_operation(not), None, "{not:?}");
        }
        assert!(is_graphql_result(
            br#"{"data":null,"errors":[{"message":"Syntax Error"}]}"#
        ));
        assert!(is_graphql_result(br#"[{"data":{}},{"errors":[]}]"#));
        for not in [&b"<html></html>"[..], b"{}", b"[]", br#"{"results":[]}"#] {
            assert!(!is_graphql_result(not));
        }
    }

    #[test]
    fn block_strings_cannot_hide_nesting_from_the_depth_scan() {
        // A block string with a lone quote inside: a scanner that saw three strings would
        // think the brackets after it are quoted.
        let hidden = format!(r#"{{ a(s: """ " """) {} }}"#, "{ b ".repeat(20_000));
        assert!(depth(&hidden) > MAX_DEPTH);
        assert_eq!(operation(&hidden, None), Err(OpError::TooDeep));
        assert_eq!(depth(r#"{ a(s: """ {{{ \""" }}} """) }"#), 2);
        assert_eq!(
            depth("{ a(s: \"\\\" {{\") }"),
            2,
            "an escaped quote stays in the string"
        );
    }

    fn kept(b: &[u8]) -> Option<KeptBody> {
        let mut k = KeptBody::default();
        k.push(b);
        Some(k)
    }

    fn src(k: &Option<KeptBody>) -> BodySource<'_> {
        BodySource {
            kept: k,
            coding: None,
        }
    }

    #[test]
    fn requests_in_every_form() {
        let none = None;
        let get = HttpParts {
            method: Some("GET"),
            query: Some("query=query%20Q%7Bx%7D&operationName=Q&variables=%7B%7D"),
            request_type: None,
            request_body: src(&none),
            response_body: src(&none),
        };
        let r = requests(&get).unwrap();
        assert_eq!(r[0].document.as_deref(), Some("query Q{x}"));
        assert_eq!(r[0].operation_name.as_deref(), Some("Q"));
        let batch = kept(
            br#"[{"query":"{a}"},{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}]"#,
        );
        let resp = kept(br#"[{"data":{}},{"errors":[{"message":"PersistedQueryNotFound"}]}]"#);
        let post = HttpParts {
            method: Some("POST"),
            query: None,
            request_type: Some("application/json; charset=utf-8"),
            request_body: src(&batch),
            response_body: src(&resp),
        };
        let r = requests(&post).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].hash.as_deref(), Some("abc"));
        assert_eq!(error_count(&post.response_body.decoded().unwrap()), Some(1));
        let other = kept(br#"{"name":"x"}"#);
        let not = HttpParts {
            request_body: src(&other),
            ..post
        };
        assert!(
            requests(&not).is_none(),
            "JSON without query is not GraphQL"
        );
    }
}
