use super::*;
use crate::dissect::testkit::{self, Driver};

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;

fn driver() -> Driver<MysqlDissector> {
    Driver::new(
        MysqlDissector::default(),
        testkit::meta(Transport::Tcp, 3306),
    )
}

/// A packet: 3-byte little-endian length, sequence number, payload.
fn packet(seq: u8, body: &[u8]) -> Vec<u8> {
    let mut p = (body.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend(body);
    p
}

/// The server's greeting: protocol 10, version, connection id, auth data, capabilities.
fn greeting(version: &str, caps: u32) -> Vec<u8> {
    let mut b = vec![10];
    b.extend(version.as_bytes());
    b.push(0);
    b.extend(7u32.to_le_bytes()); // connection id
    b.extend([1u8; 8]); // auth data part 1
    b.push(0);
    b.extend((caps as u16).to_le_bytes());
    b.push(33); // charset
    b.extend(2u16.to_le_bytes()); // status
    b.extend(((caps >> 16) as u16).to_le_bytes());
    b.push(21);
    b.extend([0u8; 10]);
    b.extend([2u8; 12]);
    b.push(0);
    b.extend(b"mysql_native_password\0");
    packet(0, &b)
}

/// The client's HandshakeResponse41: capabilities, user, auth response, schema.
fn login(caps: u32, user: &str, schema: &str) -> Vec<u8> {
    let mut b = caps.to_le_bytes().to_vec();
    b.extend(16_777_216u32.to_le_bytes());
    b.push(33);
    b.extend([0u8; 23]);
    b.extend(user.as_bytes());
    b.push(0);
    b.push(20);
    b.extend(b"SECRET-AUTH-RESPONSE");
    b.extend(schema.as_bytes());
    b.push(0);
    packet(1, &b)
}

fn ok(seq: u8, status: u16) -> Vec<u8> {
    let mut b = vec![0, 0, 0];
    b.extend(status.to_le_bytes());
    b.extend([0, 0]);
    packet(seq, &b)
}

fn eof(seq: u8, status: u16) -> Vec<u8> {
    let mut b = vec![0xfe, 0, 0];
    b.extend(status.to_le_bytes());
    packet(seq, &b)
}

fn err(seq: u8, code: u16, state: &str, msg: &str) -> Vec<u8> {
    let mut b = vec![0xff];
    b.extend(code.to_le_bytes());
    b.push(b'#');
    b.extend(state.as_bytes());
    b.extend(msg.as_bytes());
    packet(seq, &b)
}

fn query(sql: &str) -> Vec<u8> {
    let mut b = vec![0x03];
    b.extend(sql.as_bytes());
    packet(0, &b)
}

/// A text result set: `cols` column definitions, then `rows` rows, EOFs around (no
/// CLIENT_DEPRECATE_EOF).
fn result_set(cols: u8, rows: usize) -> Vec<u8> {
    let mut v = packet(1, &[cols]);
    let mut seq = 2;
    for _ in 0..cols {
        v.extend(packet(
            seq,
            b"\x03def\x00\x00\x00\x01c\x00\x0c\x21\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00",
        ));
        seq += 1;
    }
    v.extend(eof(seq, 2));
    seq += 1;
    for i in 0..rows {
        v.extend(packet(seq, format!("\x01{}", i % 10).as_bytes()));
        seq += 1;
    }
    v.extend(eof(seq, 2));
    v
}

fn connect(d: &mut Driver<MysqlDissector>, version: &str, caps: u32) {
    d.send(S, &greeting(version, caps), 100);
    d.send(C, &login(caps, "shop", "orders"), 100);
    d.send(S, &ok(2, 2), 100);
}

const CAPS: u32 = CLIENT_PROTOCOL_41 | CLIENT_CONNECT_WITH_DB | 0x8000 | 0x0008_0000;

fn op(e: &Exchange) -> &str {
    e.db.as_ref()
        .unwrap()
        .operation
        .as_ref()
        .map_or("", |o| o.name.as_str())
}

#[test]
fn detection_is_the_greeting() {
    let g = greeting("10.11.6-MariaDB-0+deb12u1", CAPS);
    assert_eq!(detect(&g, Transport::Tcp, false), Detection::FromServer);
    assert_eq!(detect(&g[..3], Transport::Tcp, false), Detection::NeedMore);
    assert_eq!(
        detect(b"GET / HTTP/1.1\r\n\r\n", Transport::Tcp, true),
        Detection::No
    );
    assert_eq!(
        detect(&query("SELECT 1"), Transport::Tcp, true),
        Detection::No
    );
}

#[test]
fn connect_queries_result_sets_and_errors() {
    for step in [1, 6, 100_000] {
        let mut d = driver();
        connect(&mut d, "10.11.6-MariaDB-0+deb12u1", CAPS);
        d.send(C, &query("SELECT title FROM books WHERE id > 1"), step);
        d.send(S, &result_set(1, 3), step);
        d.send(C, &query("INSERT INTO books VALUES (4, 'x')"), step);
        d.send(S, &ok(1, 2), step);
        d.send(C, &query("SELECT * FROM missing"), step);
        d.send(
            S,
            &err(1, 1146, "42S02", "Table 'orders.missing' doesn't exist"),
            step,
        );
        d.send(C, &packet(0, &[0x0e]), step); // COM_PING
        d.send(S, &ok(1, 2), step);
        d.send(C, &packet(0, &[0x01]), step); // COM_QUIT
        let (out, an, _) = d.close();
        assert!(an.0.is_empty(), "{an:?}");
        let ops: Vec<&str> = out.iter().map(op).collect();
        assert_eq!(
            ops,
            [
                "COM_CONNECT",
                "SELECT",
                "INSERT",
                "SELECT",
                "COM_PING",
                "COM_QUIT"
            ],
            "step {step}"
        );
        for e in &out {
            let db = e.db.as_ref().unwrap();
            assert_eq!(db.system.name, "mariadb");
            assert_eq!(db.namespace.as_deref(), Some("orders"));
        }
        assert_eq!(out[0].mysql.as_ref().unwrap().user.as_deref(), Some("shop"));
        assert!(!serde_json::to_string(&out).unwrap().contains("SECRET"));
        let select = out[1].db.as_ref().unwrap();
        assert_eq!(
            select.query.as_ref().unwrap().text,
            "SELECT title FROM books WHERE id > ?"
        );
        assert_eq!(select.response.as_ref().unwrap().returned_rows, Some(3));
        assert_eq!(out[3].status, Status::Error);
        assert_eq!(
            out[3]
                .db
                .as_ref()
                .unwrap()
                .response
                .as_ref()
                .unwrap()
                .status_code
                .as_deref(),
            Some("1146")
        );
        let e = out[3].mysql.as_ref().unwrap().error.as_ref().unwrap();
        assert_eq!(e.sqlstate.as_deref(), Some("42S02"));
    }
}

#[test]
fn prepared_statements_are_named_by_their_sql_and_eof_can_be_deprecated() {
    let caps = CAPS | CLIENT_DEPRECATE_EOF;
    let mut d = driver();
    connect(&mut d, "8.0.36", caps);
    let mut prep = vec![0x16];
    prep.extend(b"SELECT price FROM books WHERE id = ?");
    d.send(C, &packet(0, &prep), 100);
    // PREPARE_OK: id 5, 1 column, 1 parameter; then the definitions (no EOFs).
    let mut okp = vec![0];
    okp.extend(5u32.to_le_bytes());
    okp.extend(1u16.to_le_bytes());
    okp.extend(1u16.to_le_bytes());
    okp.extend([0, 0, 0]);
    let mut reply = packet(1, &okp);
    reply.extend(packet(2, b"param-def"));
    reply.extend(packet(3, b"column-def"));
    d.send(S, &reply, 100);
    let mut exec = vec![0x17];
    exec.extend(5u32.to_le_bytes());
    exec.extend([0, 1, 0, 0, 0]);
    d.send(C, &packet(0, &exec), 100);
    let mut rows = packet(1, &[1]);
    rows.extend(packet(2, b"column-def"));
    rows.extend(packet(3, &[0, 0, 4, 9, 9]));
    rows.extend(packet(4, &[0xfe, 0, 0, 2, 0, 0, 0]));
    d.send(S, &rows, 100);
    let mut close = vec![0x19];
    close.extend(5u32.to_le_bytes());
    d.send(C, &packet(0, &close), 100);
    let (out, an, _) = d.close();
    assert!(an.0.is_empty(), "{an:?}");
    let ops: Vec<&str> = out.iter().map(op).collect();
    assert_eq!(ops, ["COM_CONNECT", "PREPARE", "SELECT", "COM_STMT_CLOSE"]);
    assert_eq!(out[0].db.as_ref().unwrap().system.name, "mysql");
    let exec = out[2].db.as_ref().unwrap();
    assert_eq!(
        exec.query.as_ref().unwrap().text,
        "SELECT price FROM books WHERE id = ?"
    );
    assert_eq!(exec.response.as_ref().unwrap().returned_rows, Some(1));
}

#[test]
fn a_refused_login_tls_and_compression() {
    let mut d = driver();
    d.send(S, &greeting("10.11.6-MariaDB", CAPS), 100);
    d.send(C, &login(CAPS, "intruder", ""), 100);
    d.send(S, &err(2, 1045, "28000", "Access denied"), 100);
    let (out, _, _) = d.close();
    assert_eq!(out[0].status, Status::Error);
    assert_eq!(
        out[0]
            .db
            .as_ref()
            .unwrap()
            .response
            .as_ref()
            .unwrap()
            .status_code
            .as_deref(),
        Some("1045")
    );
    // An SSL request: the connection becomes a TLS handshake.
    let mut d = driver();
    d.send(S, &greeting("8.0.36", CAPS | CLIENT_SSL), 100);
    let mut ssl = (CAPS | CLIENT_SSL).to_le_bytes().to_vec();
    ssl.extend(16_777_216u32.to_le_bytes());
    ssl.push(33);
    ssl.extend([0u8; 23]);
    let mut hello = vec![1, 0, 0, 41, 3, 3];
    hello.extend([1u8; 32]);
    hello.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    let mut bytes = packet(1, &ssl);
    bytes.extend([22, 3, 1, 0, hello.len() as u8]);
    bytes.extend(&hello);
    d.send(C, &bytes, 100);
    d.send(S, &[21, 3, 3, 0, 2, 2, 40], 100);
    let (out, _, _) = d.close();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].protocol, Protocol::Tls);
    // Compression negotiated: counted, and the rest skipped.
    let mut d = driver();
    connect(&mut d, "8.0.36", CAPS | CLIENT_COMPRESS);
    assert!(d.finished);
    let (out, an, _) = d.close();
    assert_eq!(out.len(), 1);
    assert_eq!(an.0["mysql.compressed"], 1);
}

#[test]
fn big_rows_stream_and_garbage_is_safe() {
    let mut d = driver();
    connect(&mut d, "8.0.36", CAPS);
    d.send(C, &query("SELECT blob FROM files"), 100);
    let mut reply = packet(1, &[1]);
    reply.extend(packet(2, b"def"));
    reply.extend(eof(3, 2));
    for seq in 4..7u8 {
        let mut row = vec![0xfc, 0xe8, 0xfd];
        row.extend(vec![b'z'; 65_000]);
        reply.extend(packet(seq, &row));
    }
    reply.extend(eof(7, 2));
    d.send(S, &reply, 1448);
    assert!(d.peak < 4096, "{} held", d.peak);
    let (out, _, _) = d.close();
    assert_eq!(
        out[1]
            .db
            .as_ref()
            .unwrap()
            .response
            .as_ref()
            .unwrap()
            .returned_rows,
        Some(3)
    );
    let mut base = greeting("8.0.36", CAPS);
    base.extend(login(CAPS, "u", "d"));
    base.extend(query("SELECT 1"));
    for m in testkit::mutations(&base, 3000, 0x4d59) {
        let mut d = driver();
        let _ = d.try_send(S, &m, 9);
        let _ = d.try_send(C, &m, 9);
        d.gap(C, 3);
        let _ = d.close();
    }
}
