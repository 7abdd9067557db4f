//! The mapping on real exchanges: the project's own recordings in `tests/golden/` (real
//! servers, real clients), one protocol at a time.

use super::*;
use crate::golden as events;
use crate::route::RouteConfig;

fn spans(file: &str, opts: Options) -> Vec<SpanView> {
    let routes = Routes::new(RouteConfig::default());
    events(file)
        .iter()
        .map(|e| span(e, &routes, opts))
        .collect()
}

fn s(v: &str) -> Option<Value> {
    Some(Value::Str(v.into()))
}

fn get(sp: &SpanView, k: &str) -> Option<Value> {
    sp.attr(k).cloned()
}

#[test]
fn http_server_spans_are_named_by_route_and_fail_only_on_5xx() {
    let sp = spans(
        "http1/nginx-keepalive-pipelining.ndjson",
        Options::default(),
    );
    let by_path = |p: &str| {
        sp.iter()
            .find(|x| get(x, "url.path") == s(p))
            .unwrap_or_else(|| panic!("{p}"))
    };
    let ok = by_path("/index.html");
    assert_eq!(
        (ok.name.as_str(), ok.kind),
        ("GET /index.html", Kind::Server)
    );
    assert_eq!(get(ok, "http.route"), s("/index.html"));
    assert_eq!(get(ok, "http.response.status_code"), Some(Value::Int(200)));
    assert_eq!(get(ok, "network.protocol.version"), s("1.1"));
    assert_eq!(get(ok, "user_agent.original"), s("curl/7.88.1"));
    assert_eq!(get(ok, "server.port"), Some(Value::Int(80)));
    assert_eq!(ok.error, None);
    let missing = by_path("/missing");
    assert_eq!(
        missing.error, None,
        "4xx leaves a server span's status unset"
    );
    assert_eq!(
        get(missing, "error.type"),
        None,
        "no error.type where the status is not an error"
    );
    assert_eq!(
        get(missing, "http.response.status_code"),
        Some(Value::Int(404))
    );
    let fail = by_path("/fail");
    assert_eq!(fail.error.as_deref(), Some("500"));
    assert_eq!(get(fail, "error.type"), s("500"));
    let post = by_path("/upload");
    assert_eq!(post.name, "POST /upload");
    assert!(matches!(get(post, "http.request.body.size"), Some(Value::Int(n)) if n > 0));
}

#[test]
fn grpc_spans_use_rpc_names_and_the_server_error_codes() {
    let sp = spans("grpc/grpcio-bookshop.ndjson", Options::default());
    let first = &sp[0];
    assert_eq!(first.name, "tapwire.test.Bookshop/GetBook");
    assert_eq!(first.kind, Kind::Server);
    assert_eq!(get(first, "rpc.system.name"), s("grpc"));
    assert_eq!(get(first, "rpc.response.status_code"), s("OK"));
    assert_eq!(
        get(first, "http.route"),
        None,
        "gRPC is named by its method"
    );
    assert_eq!(
        get(first, "rpc.grpc.status_code"),
        None,
        "legacy only on request"
    );
    let nf = sp.last().expect("spans");
    assert_eq!(get(nf, "rpc.response.status_code"), s("NOT_FOUND"));
    assert_eq!(get(nf, "error.type"), s("NOT_FOUND"));
    assert_eq!(nf.error, None, "NOT_FOUND is not a server error");
    let legacy = spans(
        "grpc/grpcio-bookshop.ndjson",
        Options {
            legacy_grpc_status_code: true,
        },
    );
    assert_eq!(get(&legacy[5], "rpc.grpc.status_code"), Some(Value::Int(5)));
    assert_eq!(get(&legacy[0], "rpc.grpc.status_code"), Some(Value::Int(0)));
}

#[test]
fn graphql_spans_are_named_by_operation_and_fail_on_errors() {
    let sp = spans("graphql/strawberry-graphql-h1.ndjson", Options::default());
    assert_eq!(sp[0].name, "query AllBooks");
    assert_eq!(get(&sp[0], "graphql.operation.type"), s("query"));
    assert_eq!(get(&sp[0], "http.route"), s("/graphql"));
    assert_eq!(sp[2].name, "mutation AddBook");
    assert_eq!(sp[3].name, "query", "anonymous operation");
    assert!(sp[3].error.is_some(), "errors on HTTP 200 are errors");
    assert_eq!(get(&sp[3], "graphql.errors.count"), Some(Value::Int(1)));
}

#[test]
fn redis_spans_are_db_client_spans() {
    let sp = spans("redis/redis-server-mixed.ndjson", Options::default());
    let set = &sp[1];
    assert_eq!((set.name.as_str(), set.kind), ("SET", Kind::Client));
    assert_eq!(get(set, "db.system.name"), s("redis"));
    assert_eq!(get(set, "db.operation.name"), s("SET"));
    assert!(matches!(get(set, "db.query.text"), Some(Value::Str(q)) if q.starts_with("SET ")));
    let incr = sp
        .iter()
        .find(|x| x.name == "INCR")
        .expect("the INCR on a string");
    assert_eq!(get(incr, "db.response.status_code"), s("ERR"));
    assert_eq!(get(incr, "error.type"), s("ERR"));
    assert_eq!(incr.error.as_deref(), Some("ERR"));
}

#[test]
fn a_database_span_takes_its_system_from_the_event() {
    // What a second `db` family protocol (PostgreSQL next to Redis) relies on: nothing here
    // names Redis, the event's `db.system.name` does.
    let routes = Routes::new(RouteConfig::default());
    let mut ex = events("redis/redis-server-mixed.ndjson").remove(1);
    ex.db.as_mut().expect("a db part").system.name = "postgresql".into();
    let sp = span(&ex, &routes, Options::default());
    assert_eq!(get(&sp, "db.system.name"), s("postgresql"));
    assert_eq!(sp.kind, Kind::Client);
}

#[test]
fn every_protocol_without_its_fields_still_gets_a_named_span() {
    let routes = Routes::new(RouteConfig::default());
    for p in schemas::Protocol::ALL {
        let ex = Exchange::new(
            p,
            schemas::Transport::Tcp,
            schemas::Peer::new("10.0.0.1", 40000),
            schemas::Peer::new("10.0.0.2", 80),
            1,
        );
        let sp = span(&ex, &routes, Options::default());
        assert!(!sp.name.is_empty(), "{p:?}");
        assert_eq!(get(&sp, "server.address"), s("10.0.0.2"), "{p:?}");
    }
}

#[test]
fn kafka_spans_follow_the_messaging_conventions() {
    let sp = spans("kafka/tansu-confluent.ndjson", Options::default());
    let produce = sp
        .iter()
        .find(|x| get(x, "kafka.api_name") == s("Produce"))
        .expect("Produce");
    assert_eq!(
        (produce.name.as_str(), produce.kind),
        ("send orders", Kind::Producer)
    );
    assert_eq!(get(produce, "messaging.system"), s("kafka"));
    assert_eq!(get(produce, "messaging.operation.type"), s("send"));
    assert_eq!(get(produce, "messaging.destination.name"), s("orders"));
    assert_eq!(get(produce, "messaging.client.id"), s("tapwire-recorder"));
    let fetch = sp
        .iter()
        .find(|x| get(x, "kafka.api_name") == s("Fetch"))
        .expect("Fetch");
    // Fetch v16 names its topic by id only: the name comes from a Metadata response seen on
    // another connection to the broker.
    assert_eq!(
        (fetch.name.as_str(), fetch.kind),
        ("poll orders", Kind::Client)
    );
    assert_eq!(get(fetch, "messaging.destination.name"), s("orders"));
    assert_eq!(get(fetch, "messaging.operation.type"), s("receive"));
    let commit = sp
        .iter()
        .find(|x| get(x, "kafka.api_name") == s("OffsetCommit"))
        .expect("commit");
    assert_eq!(commit.name, "commit orders");
    assert_eq!(get(commit, "messaging.operation.type"), s("settle"));
    let join = sp
        .iter()
        .find(|x| get(x, "kafka.error_code").is_some())
        .expect("the JoinGroup that asked for a member id");
    assert_eq!(join.name, "JoinGroup");
    assert_eq!(get(join, "error.type"), s("79"));
    assert!(join.error.is_some());
    let meta = sp.iter().find(|x| x.name == "Metadata").expect("Metadata");
    assert_eq!(get(meta, "messaging.operation.type"), None);
    let lost = sp.last().expect("spans");
    assert_eq!(lost.error.as_deref(), Some("no_response"));
    assert_eq!(get(lost, "tapwire.status"), s("no_response"));
}

#[test]
fn rabbitmq_spans_follow_the_messaging_conventions() {
    let sp = spans("amqp/rabbitmq-pika.ndjson", Options::default());
    let find = |op: &str| {
        sp.iter()
            .find(|x| get(x, "messaging.operation.name") == s(op))
            .unwrap_or_else(|| panic!("{op}"))
    };
    let publish = find("basic.publish");
    assert_eq!(
        (publish.name.as_str(), publish.kind),
        ("basic.publish orders", Kind::Producer)
    );
    assert_eq!(get(publish, "messaging.system"), s("rabbitmq"));
    assert_eq!(get(publish, "messaging.operation.type"), s("send"));
    assert!(get(publish, "messaging.rabbitmq.destination.routing_key").is_some());
    let deliver = find("basic.deliver");
    assert_eq!(deliver.kind, Kind::Consumer);
    assert_eq!(get(deliver, "messaging.operation.type"), s("receive"));
    assert_eq!(
        get(find("basic.ack"), "messaging.operation.type"),
        s("settle")
    );
    assert_eq!(find("queue.declare").name, "queue.declare orders.new");
    let refused = sp
        .iter()
        .find(|x| x.name == "exchange.declare orders" && x.error.is_some())
        .expect("the refused redeclare");
    assert_eq!(get(refused, "error.type"), s("406"));
    assert!(
        refused
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("406 PRECONDITION_FAILED"))
    );
}

#[test]
fn dns_spans_carry_the_question_and_fail_on_rcode() {
    let sp = spans("dns/dnsmasq-records.ndjson", Options::default());
    assert_eq!((sp[0].name.as_str(), sp[0].kind), ("DNS A", Kind::Client));
    assert_eq!(get(&sp[0], "dns.question.name"), s("www.example.test"));
    assert_eq!(
        get(&sp[0], "dns.answers"),
        Some(Value::StrList(vec!["10.77.0.10".into()]))
    );
    assert_eq!(get(&sp[0], "network.transport"), s("udp"));
    let nx = sp
        .iter()
        .find(|x| get(x, "dns.question.name") == s("nothere.example.test"))
        .expect("NXDOMAIN");
    assert_eq!(get(nx, "error.type"), s("NXDOMAIN"));
    assert_eq!(nx.error.as_deref(), Some("NXDOMAIN"));
}

#[test]
fn unknown_methods_become_other() {
    let mut e = events("http1/nginx-keepalive-pipelining.ndjson").remove(0);
    if let Some(h) = e.http.as_mut() {
        h.request.method = Some("PURGE".into());
    }
    let sp = span(&e, &Routes::new(RouteConfig::default()), Options::default());
    assert_eq!(sp.name, "HTTP");
    assert_eq!(get(&sp, "http.request.method"), s("_OTHER"));
    assert_eq!(get(&sp, "http.request.method_original"), s("PURGE"));
}

#[test]
fn plaintext_source_exchanges_carry_their_process_and_tls_established() {
    let mut e = events("http1/nginx-keepalive-pipelining.ndjson").remove(0);
    let plain = span(&e, &Routes::new(RouteConfig::default()), Options::default());
    assert_eq!(get(&plain, "tls.established"), None);
    assert_eq!(get(&plain, "process.pid"), None);
    e.tls = Some(Box::new(schemas::Tls {
        established: Some(true),
        ..schemas::Tls::default()
    }));
    e.process = Some(schemas::Process {
        pid: 4242,
        executable: Some(schemas::ProcessExecutable {
            name: "curl".into(),
        }),
    });
    let sp = span(&e, &Routes::new(RouteConfig::default()), Options::default());
    assert_eq!(get(&sp, "tls.established"), Some(Value::Bool(true)));
    assert_eq!(get(&sp, "process.pid"), Some(Value::Int(4242)));
    assert_eq!(get(&sp, "process.executable.name"), s("curl"));
}

#[test]
fn tls_handshake_spans_carry_the_handshake_and_fail_on_an_alert() {
    let sp = spans("tls/nginx-tls.ndjson", Options::default());
    assert_eq!(
        (sp[0].name.as_str(), sp[0].kind),
        ("TLS shop.tapwire.test", Kind::Client)
    );
    assert_eq!(get(&sp[0], "tls.protocol.version"), s("1.3"));
    assert_eq!(get(&sp[0], "tls.cipher"), s("TLS_AES_256_GCM_SHA384"));
    assert_eq!(get(&sp[0], "tls.established"), Some(Value::Bool(true)));
    assert!(matches!(get(&sp[0], "tls.client.ja4"), Some(Value::Str(j)) if j.starts_with("t13d")));
    assert_eq!(sp[0].error, None);
    let full = sp
        .iter()
        .find(|x| get(x, "tls.next_protocol") == s("http/1.1"))
        .expect("the TLS 1.2 handshake with a certificate");
    assert_eq!(
        get(full, "tls.server.subject"),
        s("O=tapwire fixtures, CN=shop.tapwire.test")
    );
    assert!(get(full, "tls.server.not_after").is_some());
    let refused = sp
        .iter()
        .find(|x| get(x, "error.type") == s("protocol_version"))
        .expect("the refused version");
    assert_eq!(refused.error.as_deref(), Some("protocol_version"));
    let anonymous = sp.iter().find(|x| x.name == "TLS").expect("no SNI");
    assert_eq!(get(anonymous, "tls.client.server_name"), None);
}

#[test]
fn postgresql_spans_name_operation_and_table() {
    let sp = spans(
        "postgresql/postgres-psql-psycopg.ndjson",
        Options::default(),
    );
    let select = sp
        .iter()
        .find(|x| x.name == "SELECT books" && get(x, "db.response.returned_rows").is_some())
        .expect("a SELECT on books");
    assert_eq!(select.kind, Kind::Client);
    assert_eq!(get(select, "db.system.name"), s("postgresql"));
    assert_eq!(get(select, "db.namespace"), s("shop"));
    assert_eq!(get(select, "db.collection.name"), s("books"));
    let missing = sp
        .iter()
        .find(|x| get(x, "db.response.status_code") == s("42P01"))
        .expect("the missing table");
    assert_eq!(missing.error.as_deref(), Some("42P01"));
    assert_eq!(get(missing, "error.type"), s("42P01"));
}

#[test]
fn websocket_spans_are_the_senders_messages() {
    let sp = spans("websocket/websockets-echo.ndjson", Options::default());
    let big = sp
        .iter()
        .find(|x| get(x, "websocket.message.size") == Some(Value::Int(100_000)))
        .expect("the 100 kB message");
    assert_eq!(
        (big.name.as_str(), big.kind),
        ("WebSocket text", Kind::Producer)
    );
    let failed = sp
        .iter()
        .find(|x| get(x, "websocket.close.code") == Some(Value::Int(1011)))
        .expect("the error close");
    assert_eq!(failed.error.as_deref(), Some("1011"));
    assert_eq!(get(failed, "websocket.close.reason"), s("boom"));
}
