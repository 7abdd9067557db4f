//! The hostile inputs, one builder per class: the bytes each side of one connection sends.
//! `tests/hostile.rs` puts them in captures and runs the real binary on them; `tw-hostile-seeds`
//! writes them as fuzz seeds (the stream targets' layout, and small captures for `pipeline`),
//! so the fuzzers start from the attacks the suite knows.

use crate::pcapgen::{Pcap, SERVER, client};

/// One connection's worth of hostile bytes.
pub struct Case {
    pub name: &'static str,
    /// The fuzz target whose dissector it attacks.
    pub target: &'static str,
    pub port: u16,
    pub client: Vec<u8>,
    pub server: Vec<u8>,
}

impl Case {
    /// The case as one TCP connection in `p`, from client number `n`.
    pub fn connect(&self, p: &mut Pcap, n: u32) {
        let mut c = p.connect((client(n), 40000 + (n % 20000) as u16), (SERVER, self.port));
        p.send(&mut c, true, &self.client);
        if !self.server.is_empty() {
            p.send(&mut c, false, &self.server);
        }
        p.close(&mut c);
    }

    /// The stream fuzz targets' input: piece size, where the client's bytes end (1/256ths),
    /// the client's bytes, the server's.
    pub fn seed(&self) -> Vec<u8> {
        let total = (self.client.len() + self.server.len()).max(1);
        let split = (self.client.len() * 256 / total).min(255) as u8;
        let mut s = vec![251, split];
        s.extend_from_slice(&self.client);
        s.extend_from_slice(&self.server);
        s
    }
}

pub fn amqp_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xce);
    f
}

/// A field table holding one entry whose value is `depth` nested arrays.
pub fn nested_table(depth: usize) -> Vec<u8> {
    let mut inner: Vec<u8> = Vec::new();
    for _ in 0..depth {
        let mut v = vec![b'A'];
        v.extend_from_slice(&(inner.len() as u32).to_be_bytes());
        v.extend_from_slice(&inner);
        inner = v;
    }
    let mut entry = vec![1, b'k'];
    entry.extend_from_slice(&inner);
    let mut table = (entry.len() as u32).to_be_bytes().to_vec();
    table.extend_from_slice(&entry);
    table
}

/// AMQP field tables nested `depth` deep, in a `queue.declare` and in a content header.
pub fn amqp_nesting(depth: usize) -> Case {
    let mut c = b"AMQP\x00\x00\x09\x01".to_vec();
    let mut declare = vec![0, 50, 0, 10, 0, 0, 1, b'q', 0];
    declare.extend(nested_table(depth));
    c.extend(amqp_frame(1, 1, &declare));
    c.extend(amqp_frame(1, 1, &[0, 60, 0, 40, 0, 0, 0, 1, b'k', 0]));
    let mut header = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0b0010_0000, 0];
    header.extend(nested_table(depth));
    c.extend(amqp_frame(2, 1, &header));
    Case {
        name: "amqp-nesting",
        target: "amqp",
        port: 5672,
        client: c,
        server: Vec::new(),
    }
}

/// A GraphQL document `depth` deep behind a block string with a lone quote in it.
pub fn graphql_block_string(depth: usize) -> Case {
    let doc = format!(
        r#"{{ a(s: \"\"\" \" \"\"\") {}{} }}"#,
        "{ b ".repeat(depth),
        "}".repeat(depth)
    );
    let body = format!(r#"{{"query":"{doc}"}}"#);
    let client = format!(
        "POST /graphql HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Case {
        name: "graphql-block-string",
        target: "http1",
        port: 80,
        client: client.into_bytes(),
        server: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"data\":{}}"
            .to_vec(),
    }
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header block as HEADERS plus CONTINUATIONs of at most 16384 bytes.
fn h2_headers(stream: u32, block: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let chunks: Vec<&[u8]> = block.chunks(16_384).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let flags = if i + 1 == chunks.len() { 0x4 } else { 0 };
        out.extend(h2_frame(if i == 0 { 1 } else { 9 }, flags, stream, chunk));
    }
    out
}

/// HPACK amplification: one 60 KB table entry, then `trailers` trailer blocks on stream 1
/// and `streams` more streams, each block `refs` one-byte references to the entry.
pub fn hpack_amplification(refs: usize, trailers: usize, streams: u32) -> Case {
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend(h2_frame(4, 0, 0, &[]));
    // Size update to 65536, GET / http, then x-big: 60000 bytes, indexed.
    let mut first = vec![0x3f, 0xe1, 0xff, 0x03, 0x82, 0x84, 0x86, 0x40, 5];
    first.extend_from_slice(b"x-big");
    first.extend_from_slice(&[0x7f, 0xe1, 0xd3, 0x03]); // 127 + 59873 = 60000
    first.extend(std::iter::repeat_n(b'v', 60_000));
    wire.extend(h2_headers(1, &first));
    let mut block = vec![0x82, 0x84, 0x86];
    block.extend(std::iter::repeat_n(0x80 | 62, refs));
    for _ in 0..trailers {
        wire.extend(h2_headers(1, &block[3..]));
    }
    for i in 0..streams {
        wire.extend(h2_headers(3 + 2 * i, &block));
    }
    Case {
        name: "hpack-amplification",
        target: "http2",
        port: 8080,
        client: wire,
        server: Vec::new(),
    }
}

/// A Kafka request announcing a 1 MiB message, of which 70 bytes come.
pub fn kafka_reservation(correlation: i32) -> Case {
    let mut m = 1_000_000i32.to_be_bytes().to_vec();
    m.extend_from_slice(&3i16.to_be_bytes()); // Metadata
    m.extend_from_slice(&4i16.to_be_bytes());
    m.extend_from_slice(&correlation.to_be_bytes());
    m.extend_from_slice(&4i16.to_be_bytes());
    m.extend_from_slice(b"evil");
    m.resize(70, 0);
    Case {
        name: "kafka-reservation",
        target: "kafka",
        port: 9092,
        client: m,
        server: Vec::new(),
    }
}

/// Credentials outside the four classic headers: userinfo, signed query values, token-like
/// header names in both directions.
pub fn credentials() -> Case {
    let req = "GET http://alice:pw-in-userinfo-1@proxy.test/a?sig=sig-secret-2&page=1&access_token=tok-secret-3 HTTP/1.1\r\n\
               Host: proxy.test\r\nX-Api-Key: key-secret-4\r\nX-Auth-Token: tok-secret-5\r\n\
               X-Amz-Security-Token: amz-secret-6\r\nX-Tapwire-Token: tw-secret-7\r\n\r\n";
    Case {
        name: "credentials",
        target: "http1",
        port: 80,
        client: req.as_bytes().to_vec(),
        server: b"HTTP/1.1 200 OK\r\nX-Session-Token: sess-secret-8\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
    }
}

/// `n` pipelined HTTP/1 requests with a `header_bytes` header each, never answered.
pub fn unanswered_requests(n: usize, header_bytes: usize) -> Case {
    let mut one = b"GET /pending HTTP/1.1\r\nHost: api\r\n".to_vec();
    one.extend_from_slice(format!("X-Filler: {}\r\n\r\n", "f".repeat(header_bytes)).as_bytes());
    Case {
        name: "unanswered-requests",
        target: "http1",
        port: 80,
        client: one.repeat(n),
        server: Vec::new(),
    }
}

/// A TLS handshake whose ServerHello is followed by a Certificate message announcing 16 MiB,
/// sent as `records` full records: the handshake gatherer must stop at its cap, not buffer
/// what the length promises. The ClientHello comes in one-byte handshake records (each a
/// record of its own), so the per-record path is exercised too.
pub fn tls_certificate_flood(records: usize) -> Case {
    let record = |kind: u8, body: &[u8]| {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    };
    let mut hello = vec![1, 0, 0, 41, 3, 3];
    hello.extend_from_slice(&[9u8; 32]); // random
    hello.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]); // session id, one cipher, null compression
    let client: Vec<u8> = hello.iter().flat_map(|b| record(22, &[*b])).collect();
    let mut server_hello = vec![2, 0, 0, 38, 3, 3];
    server_hello.extend_from_slice(&[8u8; 32]);
    server_hello.extend_from_slice(&[0, 0xc0, 0x2f, 0]);
    let mut server = record(22, &server_hello);
    let mut first = vec![11, 0xff, 0xff, 0xff];
    first.extend_from_slice(&[0u8; 16380]);
    server.extend(record(22, &first));
    for _ in 1..records {
        server.extend(record(22, &[0u8; 16384]));
    }
    Case {
        name: "tls-certificate-flood",
        target: "tls",
        port: 443,
        client,
        server,
    }
}

/// A PostgreSQL client that logs in, then sends a Query announcing 1 GiB (`bytes` of it
/// sent) and a server answering with DataRows announcing 1 GiB each: both must stream past,
/// never buffered from the length.
pub fn postgresql_lengths(bytes: usize) -> Case {
    let msg = |kind: u8, len: u32, body: &[u8]| {
        let mut m = vec![kind];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(body);
        m
    };
    let mut client = Vec::new();
    let params = b"user\0app\0database\0shop\0\0";
    client.extend_from_slice(&((8 + params.len()) as u32).to_be_bytes());
    client.extend_from_slice(&196_608u32.to_be_bytes());
    client.extend_from_slice(params);
    client.extend(msg(b'Q', 0x4000_0000, &vec![b'a'; bytes]));
    let mut server = msg(b'R', 8, &[0, 0, 0, 0]);
    server.extend(msg(b'Z', 5, b"I"));
    server.extend(msg(b'D', 0x4000_0000, &vec![7; bytes]));
    Case {
        name: "postgresql-lengths",
        target: "postgresql",
        port: 5432,
        client,
        server,
    }
}

/// A MySQL server greeting, a login, then a query answered by a result set whose rows each
/// announce 16 MiB (`bytes` of each sent) and a column count of 2^62: rows must stream past,
/// and no count is believed into an allocation.
pub fn mysql_lengths(rows: usize, bytes: usize) -> Case {
    let packet = |seq: u8, len: usize, body: &[u8]| {
        let mut p = (len as u32).to_le_bytes()[..3].to_vec();
        p.push(seq);
        p.extend_from_slice(body);
        p
    };
    let mut greet = vec![10];
    greet.extend_from_slice(b"8.0.36\0");
    greet.extend_from_slice(&[7, 0, 0, 0]);
    greet.extend_from_slice(&[1; 8]);
    greet.push(0);
    greet.extend_from_slice(&[0x08, 0xa2, 33, 2, 0, 0x08, 0x00, 21]);
    greet.extend_from_slice(&[0; 10]);
    greet.extend_from_slice(&[2; 13]);
    let mut server = packet(0, greet.len(), &greet);
    server.extend(packet(2, 7, &[0, 0, 0, 2, 0, 0, 0]));
    let mut login = 0x0000_a208u32.to_le_bytes().to_vec();
    login.extend_from_slice(&[0, 0, 0, 1, 33]);
    login.extend_from_slice(&[0; 23]);
    login.extend_from_slice(b"app\0\0shop\0");
    let mut client = packet(1, login.len(), &login);
    client.extend(packet(0, 9, b"\x03SELECT 1"));
    // A column count of 2^62, one definition, its EOF, then the rows.
    server.extend(packet(1, 9, &[0xfe, 0, 0, 0, 0, 0, 0, 0, 0x40]));
    server.extend(packet(2, 3, b"def"));
    server.extend(packet(3, 5, &[0xfe, 0, 0, 2, 0]));
    for i in 0..rows {
        server.extend(packet(4 + i as u8, 0xff_fffe, &vec![b'r'; bytes]));
    }
    Case {
        name: "mysql-lengths",
        target: "mysql",
        port: 3306,
        client,
        server,
    }
}

/// Every case at a size that suits a fuzz seed (under 128 KiB).
pub fn seed_cases() -> Vec<Case> {
    vec![
        amqp_nesting(5_000),
        graphql_block_string(2_000),
        hpack_amplification(2_000, 4, 4),
        kafka_reservation(7),
        credentials(),
        unanswered_requests(20, 4000),
        tls_certificate_flood(6),
        postgresql_lengths(20_000),
        mysql_lengths(2, 20_000),
    ]
}
