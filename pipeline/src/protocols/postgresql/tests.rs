use super::*;
use crate::dissect::testkit::{self, Driver};

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;

fn driver() -> Driver<PostgresqlDissector> {
    Driver::new(
        PostgresqlDissector::default(),
        testkit::meta(Transport::Tcp, 5432),
    )
}

/// A typed message: type byte, length (counting itself), body.
fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend(((body.len() + 4) as u32).to_be_bytes());
    m.extend(body);
    m
}

fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// StartupMessage, protocol 3.0, with `params` pairs.
fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend(z(k));
        body.extend(z(v));
    }
    body.push(0);
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend(body);
    m
}

fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}

/// ErrorResponse: severity, SQLSTATE, message.
fn error(code: &str, text: &str) -> Vec<u8> {
    let mut b = vec![b'S'];
    b.extend(z("ERROR"));
    b.push(b'V');
    b.extend(z("ERROR"));
    b.push(b'C');
    b.extend(z(code));
    b.push(b'M');
    b.extend(z(text));
    b.push(0);
    msg(b'E', &b)
}

/// The server's side of a successful login: AuthenticationOk, a parameter, key data, ready.
fn login_ok() -> Vec<u8> {
    let mut v = msg(b'R', &0u32.to_be_bytes());
    v.extend(msg(b'S', b"server_version\x0015.8\x00"));
    v.extend(msg(b'K', &[0, 0, 0, 7, 0, 0, 0, 9]));
    v.extend(ready());
    v
}

fn db(e: &Exchange) -> &Db {
    e.db.as_ref().unwrap()
}

fn op(e: &Exchange) -> &str {
    db(e).operation.as_ref().map_or("", |o| o.name.as_str())
}

#[test]
fn detection_knows_the_startup_and_its_requests() {
    let s = startup(&[("user", "shop"), ("database", "orders")]);
    assert_eq!(detect(&s, Transport::Tcp, false), Detection::FromClient);
    assert_eq!(detect(&s[..6], Transport::Tcp, false), Detection::NeedMore);
    let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    assert_eq!(detect(&ssl, Transport::Tcp, false), Detection::FromClient);
    // A Kafka Metadata v0 request starts with the same code bytes: no `user` key, no match.
    let mut kafka = vec![0, 0, 0, 20, 0, 3, 0, 0, 0, 0, 0, 1, 0, 6];
    kafka.extend(b"client");
    kafka.extend([0xff, 0xff, 0xff, 0xff]);
    assert_eq!(detect(&kafka, Transport::Tcp, false), Detection::No);
    assert_eq!(
        detect(b"GET / HTTP/1.1\r\n", Transport::Tcp, true),
        Detection::No
    );
}

#[test]
fn startup_simple_queries_rows_errors_and_notices() {
    for step in [1, 5, 100_000] {
        let mut d = driver();
        d.send(
            C,
            &startup(&[
                ("user", "shop"),
                ("database", "orders"),
                ("application_name", "psql"),
            ]),
            step,
        );
        d.send(
            S,
            &msg(b'R', &[0, 0, 0, 10, b'S', b'C', b'R', b'A', b'M', 0, 0]),
            step,
        ); // SASL
        d.send(C, &msg(b'p', b"SCRAM-SHA-256\x00secret-proof"), step); // never read
        d.send(S, &login_ok(), step);
        d.send(
            C,
            &msg(b'Q', &z("SELECT id FROM orders WHERE total > 100")),
            step,
        );
        let mut reply = msg(b'T', &[0, 1]);
        reply.extend(msg(b'D', &[0, 1, 0, 0, 0, 1, b'7']));
        reply.extend(msg(b'D', &[0, 1, 0, 0, 0, 1, b'8']));
        reply.extend(msg(b'C', &z("SELECT 2")));
        reply.extend(ready());
        d.send(S, &reply, step);
        d.send(C, &msg(b'Q', &z("DELETE FROM missing")), step);
        let mut notice = vec![b'S'];
        notice.extend(z("NOTICE"));
        notice.push(b'C');
        notice.extend(z("00000"));
        notice.push(b'M');
        notice.extend(z("just so you know"));
        notice.push(0);
        let mut reply = msg(b'N', &notice);
        reply.extend(error("42P01", "relation \"missing\" does not exist"));
        reply.extend(ready());
        d.send(S, &reply, step);
        let (out, an, _) = d.close();
        assert_eq!(out.len(), 3, "step {step}: {out:#?}");
        let (login, select, fail) = (&out[0], &out[1], &out[2]);
        assert_eq!(op(login), "STARTUP");
        assert_eq!(db(login).namespace.as_deref(), Some("orders"));
        let pg = login.postgresql.as_ref().unwrap();
        assert_eq!(pg.user.as_deref(), Some("shop"));
        assert_eq!(pg.application_name.as_deref(), Some("psql"));
        let json = serde_json::to_string(&out).unwrap();
        assert!(!json.contains("secret"), "authentication never read");
        assert_eq!(op(select), "SELECT");
        assert_eq!(
            db(select).query.as_ref().unwrap().text,
            "SELECT id FROM orders WHERE total > ?"
        );
        assert_eq!(db(select).collection.as_ref().unwrap().name, "orders");
        assert_eq!(db(select).response.as_ref().unwrap().returned_rows, Some(2));
        assert_eq!(
            select.postgresql.as_ref().unwrap().command_tag.as_deref(),
            Some("SELECT 2")
        );
        assert_eq!(select.status, Status::Ok);
        assert_eq!(fail.status, Status::Error);
        assert_eq!(
            db(fail).response.as_ref().unwrap().status_code.as_deref(),
            Some("42P01")
        );
        let pg = fail.postgresql.as_ref().unwrap();
        assert_eq!(
            pg.error.as_ref().unwrap().message,
            "relation \"missing\" does not exist"
        );
        assert_eq!(pg.notices.len(), 1);
        assert!(an.0.is_empty(), "{an:?}");
    }
}

#[test]
fn a_refused_login_is_an_error() {
    let mut d = driver();
    d.send(C, &startup(&[("user", "intruder")]), 100);
    d.send(
        S,
        &error(
            "28P01",
            "password authentication failed for user \"intruder\"",
        ),
        100,
    );
    let (out, _, _) = d.close();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Status::Error);
    assert_eq!(
        db(&out[0]).namespace.as_deref(),
        Some("intruder"),
        "defaults to the user"
    );
    assert_eq!(
        db(&out[0])
            .response
            .as_ref()
            .unwrap()
            .status_code
            .as_deref(),
        Some("28P01")
    );
}

/// Parse/Bind/Describe/Execute/Sync for `sql` on the unnamed statement and portal.
fn extended(sql: &str) -> Vec<u8> {
    let mut v = msg(b'P', &[z(""), z(sql), vec![0, 0]].concat());
    v.extend(msg(
        b'B',
        &[z(""), z(""), vec![0, 0, 0, 1, 0, 0, 0, 1, b'5', 0, 0]].concat(),
    ));
    v.extend(msg(b'D', &[vec![b'P'], z("")].concat()));
    v.extend(msg(b'E', &[z(""), vec![0, 0, 0, 0]].concat()));
    v
}

#[test]
fn pipelined_extended_queries_pair_in_order_and_an_error_skips_to_sync() {
    let mut d = driver();
    d.send(C, &startup(&[("user", "app"), ("database", "shop")]), 100);
    d.send(S, &login_ok(), 100);
    // Two statements pipelined before one Sync, then a failing Parse before another Sync.
    let mut client = extended("SELECT name FROM books WHERE id = $1");
    client.extend(extended("UPDATE stock SET n = n - 1 WHERE id = $1"));
    client.extend(msg(b'S', &[]));
    client.extend(extended("SELEC oops"));
    client.extend(msg(b'S', &[]));
    d.send(C, &client, 64);
    let mut server = msg(b'1', &[]);
    server.extend(msg(b'2', &[]));
    server.extend(msg(b'T', &[0, 1]));
    server.extend(msg(b'D', &[0, 1, 0, 0, 0, 2, b'h', b'i']));
    server.extend(msg(b'C', &z("SELECT 1")));
    server.extend(msg(b'1', &[]));
    server.extend(msg(b'2', &[]));
    server.extend(msg(b'n', &[]));
    server.extend(msg(b'C', &z("UPDATE 1")));
    server.extend(ready());
    server.extend(error("42601", "syntax error at or near \"SELEC\""));
    server.extend(ready());
    d.send(S, &server, 64);
    let (out, an, _) = d.close();
    let rows: Vec<_> = out
        .iter()
        .map(|e| {
            (
                op(e).to_string(),
                db(e).query.as_ref().map(|q| q.text.clone()),
                e.status,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("STARTUP".into(), None, Status::Ok),
            (
                "SELECT".into(),
                Some("SELECT name FROM books WHERE id = $1".into()),
                Status::Ok
            ),
            (
                "UPDATE".into(),
                Some("UPDATE stock SET n = n - ? WHERE id = $1".into()),
                Status::Ok
            ),
            ("SELEC".into(), Some("SELEC oops".into()), Status::Error),
        ]
    );
    assert_eq!(
        db(&out[1]).response.as_ref().unwrap().returned_rows,
        Some(1)
    );
    assert!(an.0.is_empty(), "{an:?}");
}

#[test]
fn copy_data_is_counted_not_buffered() {
    let mut d = driver();
    d.send(C, &startup(&[("user", "app")]), 100);
    d.send(S, &login_ok(), 100);
    d.send(C, &msg(b'Q', &z("COPY events FROM STDIN")), 100);
    d.send(S, &msg(b'G', &[0, 0, 0]), 100);
    let chunk = vec![b'x'; 1 << 20];
    let mut client = Vec::new();
    for _ in 0..3 {
        client.extend(msg(b'd', &chunk));
    }
    client.extend(msg(b'c', &[]));
    d.send(C, &client, 1448);
    let mut server = msg(b'C', &z("COPY 3"));
    server.extend(ready());
    d.send(S, &server, 100);
    let peak = d.peak;
    let (out, _, _) = d.close();
    let copy = &out[1];
    assert_eq!(op(copy), "COPY");
    assert_eq!(db(copy).collection.as_ref().unwrap().name, "events");
    assert_eq!(copy.postgresql.as_ref().unwrap().copy_bytes, Some(3 << 20));
    assert!(peak < 4096, "{peak} bytes held");
}

#[test]
fn an_ssl_request_answered_yes_becomes_a_tls_handshake() {
    let mut d = driver();
    d.send(C, &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], 100);
    d.send(S, b"S", 100);
    // A ClientHello record (minimal), then the server's fatal alert.
    let mut hello = vec![1, 0, 0, 41, 3, 3];
    hello.extend([1u8; 32]);
    hello.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    let mut rec = vec![22, 3, 1, 0, hello.len() as u8];
    rec.extend(&hello);
    d.send(C, &rec, 100);
    d.send(S, &[21, 3, 3, 0, 2, 2, 40], 100);
    assert!(d.finished);
    let (out, _, _) = d.close();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].protocol, Protocol::Tls);
    assert_eq!(out[0].status, Status::Error);
    // Answered no: the startup goes on in the clear.
    let mut d = driver();
    d.send(C, &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], 100);
    d.send(S, b"N", 100);
    d.send(C, &startup(&[("user", "app")]), 100);
    d.send(S, &login_ok(), 100);
    let (out, _, _) = d.close();
    assert_eq!(op(&out[0]), "STARTUP");
    // GSSAPI encryption accepted: counted and skipped.
    let mut d = driver();
    d.send(C, &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30], 100);
    d.send(S, b"G", 100);
    assert!(d.finished);
    let (out, an, _) = d.close();
    assert!(out.is_empty());
    assert_eq!(an.0["postgresql.gss_encrypted"], 1);
}

#[test]
fn unanswered_and_cut_exchanges() {
    let mut d = driver();
    d.send(C, &startup(&[("user", "app")]), 100);
    d.send(S, &login_ok(), 100);
    d.send(C, &msg(b'Q', &z("SELECT pg_sleep(100)")), 100);
    let (out, _, _) = d.close();
    assert_eq!(out[1].status, Status::NoResponse);
    let mut d = driver();
    d.send(C, &startup(&[("user", "app")]), 100);
    d.send(S, &login_ok(), 100);
    d.send(C, &msg(b'Q', &z("SELECT 1")), 100);
    d.gap(S, 100);
    let (out, an, _) = d.close();
    assert_eq!(out[1].status, Status::Incomplete);
    assert_eq!(an.0["postgresql.gap"], 1);
}

#[test]
fn hostile_lengths_and_garbage() {
    // A query announcing 1 GiB: streamed past, never buffered; its reply still pairs.
    let mut d = driver();
    d.send(C, &startup(&[("user", "app")]), 100);
    d.send(S, &login_ok(), 100);
    let mut big = vec![b'Q'];
    big.extend(0x4000_0000u32.to_be_bytes());
    big.extend(vec![b'a'; 200_000]);
    d.send(C, &big, 1448);
    assert!(d.peak < 4096, "{}", d.peak);
    let (_, an, _) = d.close();
    assert_eq!(an.0["postgresql.message_too_large"], 1);
    // Not messages at all.
    let mut d = driver();
    d.send(C, &startup(&[("user", "app")]), 100);
    assert!(!d.try_send(S, &[0xff, 0, 0, 0, 1], 100));
    let mut base = startup(&[("user", "u"), ("database", "d")]);
    base.extend(extended("SELECT 1"));
    for m in testkit::mutations(&base, 3000, 0x5151) {
        let mut d = driver();
        let _ = d.try_send(C, &m, 7);
        let _ = d.try_send(S, &m, 7);
        d.gap(S, 3);
        let _ = d.close();
    }
}
