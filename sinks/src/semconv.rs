//! From an [`Exchange`] to what OpenTelemetry's semantic conventions call it: span name, kind,
//! attributes and status. The OTLP sink turns a [`SpanView`] into a span and the Prometheus
//! sink reads the same helpers for its labels, so a trace and a metric agree.
//!
//! The mapping is chosen by the protocol's semantic-convention [`Family`] (from the protocol
//! table in `schemas`) and reads the event's family fields (`db.*`, `messaging.*`, …), so a new
//! protocol of a known family (PostgreSQL next to Redis) gets its spans and metrics with no
//! change here; the system name comes from the event or the table.
//!
//! The conventions followed (current, not the deprecated names):
//! - HTTP server spans: name `{method} {http.route}` (`HTTP` when the method is not a known
//!   one, which becomes `_OTHER` with `http.request.method_original`); `http.route` is the
//!   [`route`](crate::route) template, never the raw path. Status is error for 5xx or no
//!   response, with `error.type` the status code (or `no_response`); 4xx leaves a server
//!   span's status unset and sets no `error.type` (the status code says it).
//! - gRPC: name `{rpc.method}`, kind server, `rpc.system.name`, `rpc.method`,
//!   `rpc.response.status_code`; status error for the codes the RPC conventions call server
//!   errors (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), and
//!   `error.type` for every code other than OK. `rpc.grpc.status_code` (the legacy number) only
//!   when [`Options::legacy_grpc_status_code`] asks for it.
//! - GraphQL: the HTTP attributes, named `{graphql.operation.type} {graphql.operation.name}`;
//!   error when the response listed errors.
//! - Databases (Redis, PostgreSQL): client span named `{db.operation.name}` (with
//!   `{db.collection.name}` after it when the query names one table), `db.system.name`,
//!   `db.query.text` (values already replaced by `?`), `db.namespace`, `db.collection.name`,
//!   `db.response.returned_rows`, `db.response.status_code` and `error.type` on an error.
//! - Kafka and RabbitMQ: `{messaging.operation.name} {destination}` with
//!   `messaging.operation.type`: Produce / `basic.publish` are `send` (producer spans), Fetch is
//!   `receive` (client), `basic.deliver` / `basic.return` are `receive` (consumer),
//!   OffsetCommit, `basic.ack`, `basic.nack`, `basic.reject` are `settle`; other API calls and
//!   methods are client spans without an operation type. Error on a non-zero Kafka error code
//!   or an AMQP close code other than 200.
//! - DNS: the conventions define only the `dns.lookup.duration` metric, so the span is a
//!   client span named `DNS {dns.question.type}` carrying its attributes (`dns.question.name`,
//!   `dns.answers`, `error.type` = response code when not NOERROR).
//!
//! Every span also has `server.*`, `client.*`, `network.transport`, `network.protocol.version`
//! where known, `tls.established`, `process.pid` and `process.executable.name` when the exchange
//! came through the TLS plaintext source, and `tapwire.status` when the exchange is not simply `ok` (`no_response`,
//! `incomplete`).

use std::sync::Arc;

use schemas::{Exchange, Family, Side, Status};

use crate::route::Routes;

/// OpenTelemetry span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
    Producer,
    Consumer,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    StrList(Vec<String>),
}

/// The span an exchange becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanView {
    pub name: String,
    pub kind: Kind,
    pub attributes: Vec<(&'static str, Value)>,
    /// `Some(description)` when the span's status is error; `None` leaves it unset.
    pub error: Option<String>,
}

impl SpanView {
    /// The value of an attribute (tests and the metrics sink).
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    fn str(&mut self, key: &'static str, v: impl Into<String>) {
        self.attributes.push((key, Value::Str(v.into())));
    }

    fn int(&mut self, key: &'static str, v: i64) {
        self.attributes.push((key, Value::Int(v)));
    }

    fn bool(&mut self, key: &'static str, v: bool) {
        self.attributes.push((key, Value::Bool(v)));
    }
}

/// Mapping options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Also emit the legacy numeric `rpc.grpc.status_code`.
    pub legacy_grpc_status_code: bool,
}

/// HTTP methods the conventions know; anything else is `_OTHER`.
const KNOWN_METHODS: [&str; 9] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// The method as the conventions want it, and the original when that is `_OTHER`.
pub fn http_method(ex: &Exchange) -> (&str, Option<&str>) {
    match ex.http.as_ref().and_then(|h| h.request.method.as_deref()) {
        Some(m) if KNOWN_METHODS.contains(&m) => (m, None),
        Some(m) => ("_OTHER", Some(m)),
        None => ("_OTHER", None),
    }
}

/// The route template of an HTTP exchange, within the per-server caps of `routes`.
pub fn http_route(ex: &Exchange, routes: &Routes) -> Option<Arc<str>> {
    let path = ex.url.as_ref()?.path.as_deref()?;
    Some(routes.route(&ex.server.address, ex.server.port, path))
}

/// The side a span or metric is about: the server of HTTP, GraphQL and gRPC (server spans,
/// `*_server_*` metrics), the client of Redis, Kafka, RabbitMQ and DNS (client, producer and
/// consumer spans, `*_client_*` and `dns_lookup_*` metrics). Its Kubernetes workload is the
/// span's `service.name` and the metric's `k8s_*` labels, as if that side had reported them.
pub fn observed(ex: &Exchange) -> &schemas::Peer {
    match ex.protocol.family().observed() {
        Side::Server => &ex.server,
        Side::Client => &ex.client,
    }
}

/// `(k8s.namespace.name, workload name)` of a peer, empty when not known.
pub fn workload_labels(peer: &schemas::Peer) -> (&str, &str) {
    let Some(k) = peer.k8s.as_deref() else {
        return ("", "");
    };
    (
        k.namespace.as_ref().map_or("", |n| n.name.as_str()),
        k.workload.as_ref().map_or("", |w| w.name.as_str()),
    )
}

/// The conventions' system name (`db.system.name`, `rpc.system.name`, `messaging.system`):
/// the event's own, else the protocol table's, else the protocol's name. Spans and metrics
/// both take it from here, so they agree.
pub fn system(ex: &Exchange) -> &str {
    let own = match ex.protocol.family() {
        Family::Db => ex.db.as_ref().map(|d| d.system.name.as_str()),
        Family::Rpc => ex.rpc.as_ref().map(|r| r.system.name.as_str()),
        Family::Messaging => ex.messaging.as_ref().map(|m| m.system.as_str()),
        Family::Http | Family::Dns | Family::Tls | Family::Websocket => None,
    };
    own.unwrap_or_else(|| {
        let info = ex.protocol.info();
        info.system.unwrap_or(info.name)
    })
}

/// gRPC codes that make a server span an error (the RPC conventions' list).
const GRPC_SERVER_ERRORS: [&str; 6] = [
    "UNKNOWN",
    "DEADLINE_EXCEEDED",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
];

/// Messaging operation: (`messaging.operation.name`, `messaging.operation.type`, span kind).
pub fn messaging_operation(ex: &Exchange) -> Option<(String, Option<&'static str>, Kind)> {
    let m = ex.messaging.as_ref()?;
    if let Some(k) = &ex.kafka {
        return Some(match k.api_name.as_str() {
            "Produce" => ("send".into(), Some("send"), Kind::Producer),
            "Fetch" => ("poll".into(), Some("receive"), Kind::Client),
            "OffsetCommit" => ("commit".into(), Some("settle"), Kind::Client),
            other => (other.to_string(), None, Kind::Client),
        });
    }
    let op = m.operation.as_ref()?.name.clone();
    let (ty, kind) = match op.as_str() {
        "basic.publish" => (Some("send"), Kind::Producer),
        "basic.deliver" | "basic.return" => (Some("receive"), Kind::Consumer),
        "basic.get" | "basic.get-ok" => (Some("receive"), Kind::Client),
        "basic.ack" | "basic.nack" | "basic.reject" => (Some("settle"), Kind::Client),
        _ => (None, Kind::Client),
    };
    Some((op, ty, kind))
}

/// The `error.type` of an exchange, when it failed (shared with the metrics).
pub fn error_type(ex: &Exchange) -> Option<String> {
    if ex.status == Status::NoResponse {
        return Some("no_response".into());
    }
    match ex.protocol.family() {
        Family::Http => {
            let code = ex
                .http
                .as_ref()
                .and_then(|h| h.response.as_ref())
                .and_then(|r| r.status_code);
            match code {
                // The span-status rule for server spans: 5xx is an error, 4xx is the client's
                // (status unset, no `error.type`; the metric's label follows the span).
                Some(c) if c >= 500 => Some(c.to_string()),
                _ if ex.status == Status::Error && ex.graphql.is_some() => {
                    Some("graphql_error".into())
                }
                _ => None,
            }
        }
        Family::Rpc => ex
            .rpc
            .as_ref()
            .and_then(|r| r.response.as_ref())
            .map(|r| r.status_code.clone())
            .filter(|c| c != "OK"),
        Family::Db => ex
            .db
            .as_ref()
            .and_then(|d| d.response.as_ref())
            .and_then(|r| r.status_code.clone()),
        Family::Dns => ex
            .dns
            .as_ref()
            .and_then(|d| d.response_code.clone())
            .filter(|c| c != "NOERROR"),
        // A close with one of the protocol's error codes.
        Family::Websocket => ex
            .websocket
            .as_ref()
            .and_then(|w| w.close.as_ref()?.code)
            .filter(|_| ex.status == Status::Error)
            .map(|c| c.to_string()),
        // A failed handshake: the alert that ended it.
        Family::Tls => ex
            .tls
            .as_ref()
            .and_then(|t| t.alert.as_ref())
            .filter(|_| ex.status == Status::Error)
            .map(|a| a.description.clone()),
        // Each broker protocol reports failure in its own part: a Kafka error code, an AMQP
        // reply code other than 200.
        Family::Messaging => {
            let kafka = ex.kafka.as_ref().and_then(|k| k.error_code);
            let amqp = ex.amqp.as_ref().and_then(|a| a.reply_code);
            kafka
                .filter(|c| *c != 0)
                .map(|c| c.to_string())
                .or_else(|| amqp.filter(|c| *c != 200).map(|c| c.to_string()))
        }
    }
}

/// The span for one exchange.
pub fn span(ex: &Exchange, routes: &Routes, opts: Options) -> SpanView {
    let mut s = SpanView {
        name: String::new(),
        kind: Kind::Client,
        attributes: Vec::with_capacity(16),
        error: None,
    };
    let err = error_type(ex);
    match ex.protocol.family() {
        Family::Http | Family::Rpc => http_span(ex, routes, opts, &mut s),
        Family::Db => {
            let op = ex
                .db
                .as_ref()
                .and_then(|d| d.operation.as_ref())
                .map(|o| o.name.clone());
            let system = system(ex);
            // `{db.operation.name} {db.collection.name}` where both are known.
            let collection = ex
                .db
                .as_ref()
                .and_then(|d| d.collection.as_ref())
                .map(|c| c.name.as_str());
            s.name = match (&op, collection) {
                (Some(op), Some(c)) => format!("{op} {c}"),
                (Some(op), None) => op.clone(),
                (None, _) => system.to_string(),
            };
            s.str("db.system.name", system);
            if let Some(op) = op {
                s.str("db.operation.name", op);
            }
            if let Some(db) = &ex.db {
                if let Some(q) = &db.query {
                    s.str("db.query.text", q.text.clone());
                }
                if let Some(r) = &db.response {
                    if let Some(code) = &r.status_code {
                        s.str("db.response.status_code", code.clone());
                    }
                    if let Some(n) = r.returned_rows {
                        s.int("db.response.returned_rows", n as i64);
                    }
                }
                if let Some(n) = &db.namespace {
                    s.str("db.namespace", n.clone());
                }
                if let Some(c) = &db.collection {
                    s.str("db.collection.name", c.name.clone());
                }
            }
            if ex.status == Status::Error {
                s.error = err.clone();
            }
        }
        Family::Messaging => messaging_span(ex, &mut s),
        Family::Websocket => {
            // A producer span for the side that sent the message.
            let w = ex.websocket.as_ref();
            s.kind = Kind::Producer;
            s.name = format!("WebSocket {}", w.map_or("message", |w| w.opcode.as_str()));
            if let Some(w) = w {
                s.str("websocket.direction", w.direction.clone());
                s.str("websocket.opcode", w.opcode.clone());
                s.int("websocket.message.size", w.message.size as i64);
                if let Some(c) = &w.close {
                    if let Some(code) = c.code {
                        s.int("websocket.close.code", i64::from(code));
                    }
                    if let Some(r) = &c.reason {
                        s.str("websocket.close.reason", r.clone());
                    }
                }
            }
            if ex.status == Status::Error {
                s.error = err.clone();
            }
        }
        Family::Tls => {
            tls_span(ex, &mut s);
            if ex.status == Status::Error {
                s.error = err.clone();
            }
        }
        Family::Dns => {
            let d = ex.dns.as_ref();
            let q = d.and_then(|d| d.question.as_ref());
            s.name = match q {
                Some(q) => format!("DNS {}", q.qtype),
                None => "DNS".into(),
            };
            if let Some(q) = q {
                s.str("dns.question.name", q.name.clone());
                s.str("dns.question.type", q.qtype.clone());
            }
            if let Some(d) = d {
                s.int("dns.id", i64::from(d.id));
                if let Some(rc) = &d.response_code {
                    s.str("dns.response_code", rc.clone());
                }
                let answers: Vec<String> = d
                    .answers
                    .iter()
                    .filter(|a| matches!(a.rtype.as_str(), "A" | "AAAA"))
                    .map(|a| a.data.clone())
                    .collect();
                if !answers.is_empty() {
                    s.attributes.push(("dns.answers", Value::StrList(answers)));
                }
            }
            if ex.status == Status::Error {
                s.error = err.clone();
            }
        }
    }
    if ex.status == Status::NoResponse {
        s.error = Some("no_response".into());
    }
    if let Some(e) = &err {
        s.str("error.type", e.clone());
    }
    s.str("server.address", ex.server.address.clone());
    s.int("server.port", i64::from(ex.server.port));
    s.str("client.address", ex.client.address.clone());
    s.int("client.port", i64::from(ex.client.port));
    s.str(
        "network.transport",
        match ex.network.transport {
            schemas::Transport::Tcp => "tcp",
            schemas::Transport::Udp => "udp",
        },
    );
    if let Some(p) = &ex.network.protocol {
        s.str("network.protocol.version", p.version.clone());
    }
    if let Some(established) = ex.tls.as_ref().and_then(|t| t.established) {
        s.bool("tls.established", established);
    }
    if let Some(p) = &ex.process {
        s.int("process.pid", i64::from(p.pid));
        if let Some(e) = &p.executable {
            s.str("process.executable.name", e.name.clone());
        }
    }
    match ex.status {
        Status::Ok | Status::Error => {}
        Status::NoResponse => s.str("tapwire.status", "no_response"),
        Status::Incomplete => s.str("tapwire.status", "incomplete"),
    }
    s
}

/// A TLS handshake: a client span named `TLS {server name}` (`TLS` without SNI) with the
/// handshake's `tls.*` attributes. (`tls.established` is set by the common part.)
fn tls_span(ex: &Exchange, s: &mut SpanView) {
    let t = ex.tls.as_ref();
    let client = t.and_then(|t| t.client.as_ref());
    let sni = client.and_then(|c| c.server_name.clone());
    s.name = match &sni {
        Some(n) => format!("TLS {n}"),
        None => "TLS".into(),
    };
    let Some(t) = t else { return };
    if let Some(n) = sni {
        s.str("tls.client.server_name", n);
    }
    if let Some(c) = client {
        s.str("tls.client.ja3", c.ja3.clone());
        s.str("tls.client.ja4", c.ja4.clone());
        if !c.next_protocols.is_empty() {
            s.attributes.push((
                "tls.client.next_protocols",
                Value::StrList(c.next_protocols.clone()),
            ));
        }
    }
    if let Some(p) = &t.protocol {
        s.str("tls.protocol.name", p.name.clone());
        s.str("tls.protocol.version", p.version.clone());
    }
    if let Some(c) = &t.cipher {
        s.str("tls.cipher", c.clone());
    }
    if let Some(n) = &t.next_protocol {
        s.str("tls.next_protocol", n.clone());
    }
    if let Some(r) = t.resumed {
        s.bool("tls.resumed", r);
    }
    if let Some(srv) = &t.server {
        for (key, v) in [
            ("tls.server.subject", &srv.subject),
            ("tls.server.issuer", &srv.issuer),
            ("tls.server.not_before", &srv.not_before),
            ("tls.server.not_after", &srv.not_after),
        ] {
            if let Some(v) = v {
                s.str(key, v.clone());
            }
        }
        if let Some(h) = &srv.hash {
            s.str("tls.server.hash.sha256", h.sha256.clone());
        }
    }
}

fn http_span(ex: &Exchange, routes: &Routes, opts: Options, s: &mut SpanView) {
    s.kind = Kind::Server;
    let (method, original) = http_method(ex);
    let route = if ex.protocol.family() == Family::Rpc {
        None
    } else {
        http_route(ex, routes)
    };
    s.str("http.request.method", method);
    if let Some(o) = original {
        s.str("http.request.method_original", o);
    }
    if let Some(r) = &route {
        s.str("http.route", &**r);
    }
    if let Some(u) = &ex.url {
        if let Some(p) = &u.path {
            s.str("url.path", p.clone());
        }
        if let Some(q) = &u.query {
            s.str("url.query", q.clone());
        }
        s.str(
            "url.scheme",
            u.scheme.clone().unwrap_or_else(|| "http".into()),
        );
    }
    let mut code = None;
    if let Some(h) = &ex.http {
        if let Some(ua) = h.request.header.first("user-agent") {
            s.str("user_agent.original", ua);
        }
        if let Some(b) = &h.request.body {
            s.int("http.request.body.size", b.size as i64);
        }
        if let Some(r) = &h.response {
            code = r.status_code;
            if let Some(c) = code {
                s.int("http.response.status_code", i64::from(c));
            }
            if let Some(b) = &r.body {
                s.int("http.response.body.size", b.size as i64);
            }
        }
    }
    s.name = if method == "_OTHER" {
        "HTTP".to_string()
    } else {
        match &route {
            Some(r) => format!("{method} {r}"),
            None => method.to_string(),
        }
    };
    if code.is_some_and(|c| c >= 500) {
        s.error = code.map(|c| c.to_string());
    }
    if ex.protocol.family() == Family::Rpc {
        let rpc = ex.rpc.as_ref();
        let m = rpc.and_then(|r| r.method.clone());
        s.str("rpc.system.name", system(ex));
        if let Some(m) = &m {
            s.str("rpc.method", m.clone());
            s.name = m.clone();
        }
        if let Some(st) = rpc.and_then(|r| r.response.as_ref()) {
            s.str("rpc.response.status_code", st.status_code.clone());
            if opts.legacy_grpc_status_code
                && let Some(n) = schemas::l7::rpc::grpc_status_code(&st.status_code)
            {
                s.int("rpc.grpc.status_code", n);
            }
            if GRPC_SERVER_ERRORS.contains(&st.status_code.as_str()) {
                let msg = ex.grpc.as_ref().and_then(|g| g.status_message.clone());
                s.error = Some(msg.unwrap_or_else(|| st.status_code.clone()));
            }
        }
    }
    if let Some(g) = &ex.graphql {
        let ty = g.operation.kind.clone();
        if let Some(t) = &ty {
            s.str("graphql.operation.type", t.clone());
        }
        if let Some(n) = &g.operation.name {
            s.str("graphql.operation.name", n.clone());
        }
        s.name = match (&ty, &g.operation.name) {
            (Some(t), Some(n)) => format!("{t} {n}"),
            (Some(t), None) => t.clone(),
            _ => "GraphQL Operation".into(),
        };
        if let Some(e) = &g.errors
            && e.count > 0
        {
            s.int("graphql.errors.count", e.count as i64);
            s.error = Some(format!("{} GraphQL error(s)", e.count));
        }
    }
}

fn messaging_span(ex: &Exchange, s: &mut SpanView) {
    let m = ex.messaging.as_ref();
    let system = system(ex);
    s.str("messaging.system", system);
    let dest = m
        .and_then(|m| m.destination.as_ref())
        .map(|d| d.name.clone());
    match messaging_operation(ex) {
        Some((op, ty, kind)) => {
            s.kind = kind;
            s.name = match &dest {
                Some(d) if !d.is_empty() => format!("{op} {d}"),
                _ => op.clone(),
            };
            s.str("messaging.operation.name", op);
            if let Some(t) = ty {
                s.str("messaging.operation.type", t);
            }
        }
        None => s.name = system.to_string(),
    }
    if let Some(d) = dest {
        s.str("messaging.destination.name", d);
    }
    if let Some(m) = m {
        if let Some(c) = &m.client {
            s.str("messaging.client.id", c.id.clone());
        }
        if let Some(c) = &m.consumer {
            s.str("messaging.consumer.group.name", c.group.name.clone());
        }
        if let Some(b) = &m.batch {
            s.int("messaging.batch.message_count", b.message_count as i64);
        }
        if let Some(b) = m.message.as_ref().and_then(|m| m.body.as_ref()) {
            s.int("messaging.message.body.size", b.size as i64);
        }
        if let Some(r) = &m.rabbitmq {
            if !r.destination.routing_key.is_empty() {
                s.str(
                    "messaging.rabbitmq.destination.routing_key",
                    r.destination.routing_key.clone(),
                );
            }
            if let Some(e) = &r.exchange {
                s.str("messaging.rabbitmq.exchange.name", e.name.clone());
            }
        }
    }
    if let Some(k) = &ex.kafka {
        s.str("kafka.api_name", k.api_name.clone());
        s.int("kafka.api_key", i64::from(k.api_key));
        s.int("kafka.api_version", i64::from(k.api_version));
        if let Some(c) = k.error_code.filter(|c| *c != 0) {
            s.int("kafka.error_code", i64::from(c));
            s.error = Some(format!("Kafka error code {c}"));
        }
    }
    if let Some(a) = &ex.amqp {
        s.int("amqp.channel", i64::from(a.channel));
        if let Some(c) = a.reply_code.filter(|c| *c != 200) {
            s.int("amqp.reply_code", i64::from(c));
            s.error = Some(match &a.reply_text {
                Some(t) => format!("{c} {t}"),
                None => c.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests;
