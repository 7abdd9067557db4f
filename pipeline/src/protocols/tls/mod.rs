//! TLS handshakes (no decryption): one exchange per handshake, from the ClientHello to the
//! server's Finished (TLS ≤ 1.2) or to the server's last handshake record before the client's
//! second flight (TLS 1.3, whose Finished is encrypted), or to a fatal alert.
//!
//! Read from the ClientHello: the server name (SNI), the ALPN protocols offered, the JA3 and
//! JA4 fingerprints ([`ja`]). From the ServerHello: the version (its `supported_versions`
//! extension in TLS 1.3), the cipher suite, the ALPN protocol chosen, resumption (a TLS 1.3
//! pre-shared key accepted; in TLS 1.2, a ChangeCipherSpec before any certificate). From the
//! server's Certificate (TLS ≤ 1.2; encrypted in 1.3): the leaf's subject, issuer, validity,
//! alternative names and SHA-256. A fatal alert ends the exchange as an `error` with the
//! alert's name (`error.type`).
//!
//! Records are framed here (type, version, length: five bytes, then at most
//! [`MAX_RECORD_BODY`] bytes), using the flow layer's pending bytes for a record split across
//! segments; handshake messages are gathered across records (a certificate chain can span
//! several) up to [`MAX_HANDSHAKE`] bytes per direction. Messages are decoded by `tls-parser`,
//! certificates by `x509-parser`; the extension walk for the fingerprints is ours (the
//! fingerprints need every extension type in wire order, GREASE included, which the crate's
//! typed list does not keep). Once the exchange is reported the dissector returns
//! `Progress::Finished` and the flow layer stops feeding it: the encrypted rest of the
//! connection costs nothing here.
//!
//! Not visible: in TLS 1.3 everything after the ServerHello is encrypted, so a client that
//! rejects the server's certificate answers with an encrypted alert that looks like its
//! Finished: such a handshake is reported `ok` (the connection then closes at once).
//!
//! Failure behaviour: bytes that are not TLS records end dissection of the flow
//! (`tls.bad_record`); a message the crates reject is counted (`tls.bad_client_hello`,
//! `tls.bad_server_hello`, `tls.bad_certificate`) and the exchange goes on without its
//! fields; a gap or a handshake larger than the cap ends the exchange as `incomplete`.

pub mod ja;

use schemas::{
    Exchange, Protocol, Status, Tls, TlsAlert, TlsClient, TlsHash, TlsProtocol, TlsServer, TlsX509,
    Transport,
};
use sha2::{Digest as _, Sha256};
use tls_parser::{TlsMessage, TlsMessageHandshake};

use crate::dissect::entry::{Detection, ProtocolEntry};
use crate::dissect::{
    Direction, DissectError, Dissector, EXCHANGE_ESTIMATE, Emitter, FlowMeta, Progress,
};
use crate::wire::be16;

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        BadCertificate = "tls.bad_certificate",
        BadClientHello = "tls.bad_client_hello",
        BadRecord = "tls.bad_record",
        BadServerHello = "tls.bad_server_hello",
        Gap = "tls.gap",
        HandshakeTooLarge = "tls.handshake_too_large",
    }
}

/// Largest record body accepted: a TLSCiphertext's bound (2^14 + 2048, RFC 5246 §6.2.3).
pub const MAX_RECORD_BODY: usize = 16384 + 2048;
/// Handshake bytes gathered per direction (messages split across records wait here).
pub const MAX_HANDSHAKE: usize = 64 * 1024;

/// The ServerHello random that makes it a HelloRetryRequest (RFC 8446 §4.1.3).
const HELLO_RETRY: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const HEARTBEAT: u8 = 24;

pub const ENTRY: ProtocolEntry = ProtocolEntry {
    protocol: Protocol::Tls,
    tcp: true,
    udp: false,
    ports: &[443, 8443],
    detect,
    new: |_meta: &FlowMeta| Box::new(TlsDissector::default()),
};

/// A handshake record starting a ClientHello (from the client) or a ServerHello (from the
/// server, a connection picked up after its ClientHello).
fn detect(data: &[u8], t: Transport, _hinted: bool) -> Detection {
    if t != Transport::Tcp {
        return Detection::No;
    }
    let want = [HANDSHAKE, 3];
    let n = data.len().min(2);
    if data[..n] != want[..n] {
        return Detection::No;
    }
    match (data.get(2), data.get(5)) {
        (Some(minor), _) if *minor > 4 => Detection::No,
        (_, None) => Detection::NeedMore,
        (_, Some(1)) => Detection::FromClient,
        (_, Some(2)) => Detection::FromServer,
        _ => Detection::No,
    }
}

/// One direction's record state.
#[derive(Debug, Default)]
struct Side {
    /// Handshake bytes not yet a whole message.
    handshake: Vec<u8>,
    /// After its ChangeCipherSpec (TLS ≤ 1.2) or its ServerHello (a TLS 1.3 server): its
    /// records can no longer be read.
    encrypted: bool,
}

/// TLS dissector state for one connection.
#[derive(Debug, Default)]
pub struct TlsDissector {
    sides: [Side; 2],
    /// The handshake being reported (from the ClientHello, or the ServerHello when the
    /// capture started after it).
    ex: Option<Exchange>,
    /// The ServerHello (not a HelloRetryRequest) was seen, with the version it chose.
    version: Option<u16>,
    /// A HelloRetryRequest came: the client's second ClientHello is part of this handshake.
    retry: bool,
    /// The server sent a certificate or ServerHelloDone (a full TLS 1.2 handshake).
    full: bool,
    /// The server's ChangeCipherSpec came (TLS ≤ 1.2): its next record is its Finished.
    server_ccs: bool,
    last_server_ts: u64,
    done: bool,
}

impl TlsDissector {
    fn tls(&mut self) -> Option<&mut Tls> {
        self.ex
            .as_mut()
            .map(|e| &mut **e.tls.get_or_insert_with(Default::default))
    }

    /// Report the handshake, ending at `end` with `status`.
    fn finish(&mut self, end: u64, status: Status, out: &mut Emitter<'_>) {
        if let Some(mut ex) = self.ex.take() {
            ex.end_time_unix_nano = end.max(ex.start_time_unix_nano);
            ex.status = status;
            if status == Status::Ok
                && let Some(t) = ex.tls.as_mut()
            {
                t.established = Some(true);
            }
            out.emit(ex);
        }
        self.done = true;
        self.sides = Default::default();
    }

    fn start(&mut self, ts: u64, out: &mut Emitter<'_>) {
        if self.ex.is_none() && !self.done {
            let mut ex = out.exchange(Protocol::Tls, ts);
            ex.tls = Some(Box::new(Tls::default()));
            self.ex = Some(ex);
        }
    }

    fn client_hello(&mut self, msg: &[u8], ts: u64, out: &mut Emitter<'_>) {
        if self.ex.is_some() && self.retry {
            // The second ClientHello after a HelloRetryRequest: same handshake.
            return;
        }
        self.start(ts, out);
        let Some(client) = parse_client_hello(msg) else {
            out.anomaly(Anomaly::BadClientHello);
            if let Some(ex) = self.ex.as_mut() {
                ex.add_anomaly(Anomaly::BadClientHello.name());
            }
            return;
        };
        if let Some(t) = self.tls() {
            t.client = Some(client);
        }
    }

    fn server_hello(&mut self, msg: &[u8], ts: u64, out: &mut Emitter<'_>) {
        self.start(ts, out);
        let Some(sh) = parse_server_hello(msg) else {
            out.anomaly(Anomaly::BadServerHello);
            if let Some(ex) = self.ex.as_mut() {
                ex.add_anomaly(Anomaly::BadServerHello.name());
            }
            return;
        };
        if sh.retry {
            self.retry = true;
            return;
        }
        self.version = Some(sh.version);
        if sh.version >= 0x0304 {
            // Everything after the ServerHello is encrypted.
            self.sides[Direction::ToClient.index()].encrypted = true;
        }
        if let Some(t) = self.tls() {
            t.protocol = Some(protocol(sh.version));
            t.cipher = Some(cipher_name(sh.cipher));
            t.next_protocol = sh.alpn;
            if sh.version >= 0x0304 {
                t.resumed = Some(sh.psk);
            }
        }
    }

    fn certificate(&mut self, msg: &[u8], out: &mut Emitter<'_>) {
        self.full = true;
        let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::Certificate(c)))) =
            tls_parser::parse_tls_message_handshake(msg)
        else {
            out.anomaly(Anomaly::BadCertificate);
            return;
        };
        let Some(leaf) = c.cert_chain.first() else {
            return;
        };
        match leaf_fields(leaf.data) {
            Some(server) => {
                if let Some(t) = self.tls() {
                    t.server = Some(server);
                }
            }
            None => out.anomaly(Anomaly::BadCertificate),
        }
    }

    /// Whole handshake messages gathered from `dir`'s records.
    fn messages(&mut self, dir: Direction, ts: u64, out: &mut Emitter<'_>) {
        let mut at = 0;
        loop {
            let buf = &self.sides[dir.index()].handshake;
            let Some(head) = buf.get(at..at + 4) else {
                break;
            };
            let len =
                (usize::from(head[1]) << 16) | (usize::from(head[2]) << 8) | usize::from(head[3]);
            let Some(msg) = buf.get(at..at + 4 + len) else {
                break;
            };
            let (kind, msg) = (head[0], msg.to_vec());
            at += 4 + len;
            match (dir, kind) {
                (Direction::ToServer, 1) => self.client_hello(&msg, ts, out),
                (Direction::ToClient, 2) => self.server_hello(&msg, ts, out),
                (Direction::ToClient, 11) => self.certificate(&msg, out),
                (Direction::ToClient, 14) => self.full = true,
                _ => {}
            }
            if self.done {
                return;
            }
        }
        self.sides[dir.index()].handshake.drain(..at);
    }

    fn record(&mut self, dir: Direction, kind: u8, body: &[u8], ts: u64, out: &mut Emitter<'_>) {
        let from_server = dir == Direction::ToClient;
        if from_server {
            self.last_server_ts = ts;
        }
        let tls13 = self.version.is_some_and(|v| v >= 0x0304);
        // The client's second flight after a TLS 1.3 ServerHello: the handshake is over on the
        // server's side (its Finished was its last record before this).
        if !from_server && tls13 && matches!(kind, CHANGE_CIPHER_SPEC | APPLICATION_DATA) {
            let end = self.last_server_ts;
            self.finish(end, Status::Ok, out);
            return;
        }
        // A TLS ≤ 1.2 server's record after its ChangeCipherSpec is its Finished.
        if from_server && self.server_ccs {
            self.finish(ts, Status::Ok, out);
            return;
        }
        let encrypted = self.sides[dir.index()].encrypted;
        match kind {
            HANDSHAKE if !encrypted => {
                let side = &mut self.sides[dir.index()];
                if side.handshake.len() + body.len() > MAX_HANDSHAKE {
                    out.anomaly(Anomaly::HandshakeTooLarge);
                    if let Some(ex) = self.ex.as_mut() {
                        ex.add_anomaly(Anomaly::HandshakeTooLarge.name());
                    }
                    self.finish(ts, Status::Incomplete, out);
                    return;
                }
                side.handshake.extend_from_slice(body);
                self.messages(dir, ts, out);
            }
            // A ChangeCipherSpec turns encryption on only in TLS ≤ 1.2, after the ServerHello;
            // TLS 1.3's are dummies for middleboxes (around a HelloRetryRequest, too).
            CHANGE_CIPHER_SPEC if self.version.is_some() && !tls13 => {
                self.sides[dir.index()].encrypted = true;
                if from_server {
                    self.server_ccs = true;
                    // No certificate before it: an abbreviated (resumed) handshake.
                    let full = self.full;
                    if let Some(t) = self.tls() {
                        t.resumed = Some(!full);
                    }
                }
            }
            ALERT if !encrypted && body.len() >= 2 => {
                let [level, code, ..] = *body else { return };
                if self.ex.is_none() {
                    return;
                }
                if let Some(t) = self.tls() {
                    t.alert = Some(TlsAlert {
                        level: if level == 2 { "fatal" } else { "warning" }.into(),
                        description: alert_name(code),
                        sender: if from_server { "server" } else { "client" }.into(),
                    });
                }
                if level == 2 {
                    self.finish(ts, Status::Error, out);
                }
            }
            _ => {}
        }
    }
}

impl TlsDissector {
    /// Feed the bytes of `data` from `at` on (a connection that switched to TLS inside
    /// another protocol: PostgreSQL's SSLRequest, MySQL's SSL request), with the progress
    /// measured from the start of `data`.
    pub fn feed_from(
        &mut self,
        dir: Direction,
        data: &[u8],
        at: usize,
        ts: u64,
        out: &mut Emitter<'_>,
    ) -> Progress {
        let rest = data.get(at..).unwrap_or_default();
        if rest.is_empty() {
            return Progress::Done;
        }
        match self.feed(dir, rest, ts, out) {
            Progress::Incomplete { consumed, needed } => Progress::Incomplete {
                consumed: consumed + at,
                needed,
            },
            p => p,
        }
    }
}

impl Dissector for TlsDissector {
    fn feed(&mut self, dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        let mut at = 0;
        while !self.done {
            let Some(head) = data.get(at..at + 5) else {
                return Progress::Incomplete {
                    consumed: at,
                    needed: at + 5 - data.len(),
                };
            };
            let kind = head[0];
            let len = usize::from(be16(head, 3).unwrap_or(0));
            if !(CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&kind)
                || head[1] != 3
                || head[2] > 4
                || len > MAX_RECORD_BODY
            {
                out.anomaly(Anomaly::BadRecord);
                if let Some(ex) = self.ex.as_mut() {
                    ex.add_anomaly(Anomaly::BadRecord.name());
                }
                self.finish(ts, Status::Incomplete, out);
                return Progress::Error(DissectError {
                    protocol: Protocol::Tls,
                    reason: "not a TLS record",
                });
            }
            let Some(body) = data.get(at + 5..at + 5 + len) else {
                return Progress::Incomplete {
                    consumed: at,
                    needed: at + 5 + len - data.len(),
                };
            };
            self.record(dir, kind, body, ts, out);
            at += 5 + len;
            if at == data.len() {
                break;
            }
        }
        if self.done {
            Progress::Finished
        } else {
            Progress::Done
        }
    }

    fn gap(&mut self, _dir: Direction, _len: u64, ts: u64, out: &mut Emitter<'_>) {
        if self.done {
            return;
        }
        out.anomaly(Anomaly::Gap);
        if let Some(ex) = self.ex.as_mut() {
            ex.add_anomaly(Anomaly::Gap.name());
        }
        self.finish(ts, Status::Incomplete, out);
    }

    fn is_idle(&self) -> bool {
        self.done
    }

    fn close(&mut self, ts: u64, out: &mut Emitter<'_>) {
        if self.done {
            return;
        }
        // Cut short: no answer at all, or an answer that did not end.
        let status = if self.version.is_some() {
            Status::Incomplete
        } else {
            Status::NoResponse
        };
        let end = if self.version.is_some() {
            self.last_server_ts
        } else {
            ts
        };
        self.finish(end, status, out);
    }

    fn held_bytes(&self) -> usize {
        self.sides
            .iter()
            .map(|s| s.handshake.capacity())
            .sum::<usize>()
            + if self.ex.is_some() {
                EXCHANGE_ESTIMATE
            } else {
                0
            }
    }
}

/// `tls.protocol.*` of a version number.
fn protocol(v: u16) -> TlsProtocol {
    let (name, version) = match v {
        0x0300 => ("ssl", "3.0".to_string()),
        0x0301 => ("tls", "1.0".into()),
        0x0302 => ("tls", "1.1".into()),
        0x0303 => ("tls", "1.2".into()),
        0x0304 => ("tls", "1.3".into()),
        other => ("tls", format!("0x{other:04x}")),
    };
    TlsProtocol {
        name: name.into(),
        version,
    }
}

/// A cipher suite's IANA name (its number in hex when unknown).
fn cipher_name(id: u16) -> String {
    tls_parser::TlsCipherSuite::from_id(id)
        .map(|c| c.name.to_string())
        .unwrap_or_else(|| format!("0x{id:04X}"))
}

/// An alert's RFC 8446 name (`handshake_failure`), from the crate's (`HandshakeFailure`).
pub fn alert_name(code: u8) -> String {
    let camel = tls_parser::TlsAlertDescription(code).to_string();
    if camel.contains('(') || camel.is_empty() {
        return format!("alert_{code}");
    }
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Extensions of a hello as (type, body), in wire order; `None` when they overrun.
fn extensions(mut ext: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while !ext.is_empty() {
        let kind = be16(ext, 0)?;
        let len = usize::from(be16(ext, 2)?);
        let body = ext.get(4..4 + len)?;
        out.push((kind, body));
        ext = ext.get(4 + len..)?;
    }
    Some(out)
}

/// A list of u16 behind a length prefix of `prefix` bytes (1 or 2).
fn u16_list(body: &[u8], prefix: usize) -> Vec<u16> {
    let list = body.get(prefix..).unwrap_or_default();
    list.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

/// The ALPN protocol names of an ALPN extension body.
fn alpn_names(body: &[u8]) -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    let mut rest = body.get(2..).unwrap_or_default();
    while let Some((&len, tail)) = rest.split_first() {
        let Some(name) = tail.get(..usize::from(len)) else {
            break;
        };
        names.push(name.to_vec());
        rest = tail.get(usize::from(len)..).unwrap_or_default();
    }
    names
}

fn parse_client_hello(msg: &[u8]) -> Option<TlsClient> {
    let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)))) =
        tls_parser::parse_tls_message_handshake(msg)
    else {
        return None;
    };
    let exts = extensions(ch.ext.unwrap_or_default())?;
    let mut hello = ja::Hello {
        version: ch.version.0,
        ciphers: ch.ciphers.iter().map(|c| c.0).collect(),
        extensions: exts.iter().map(|(k, _)| *k).collect(),
        ..ja::Hello::default()
    };
    let mut server_name = None;
    let mut protocols = Vec::new();
    for (kind, body) in &exts {
        match kind {
            0x0000 => {
                hello.has_sni = true;
                // server_name_list: u16 length, then (type u8, u16 length, name).
                if body.get(2) == Some(&0)
                    && let Some(n) = be16(body, 3)
                    && let Some(name) = body.get(5..5 + usize::from(n))
                {
                    server_name = Some(String::from_utf8_lossy(name).into_owned());
                }
            }
            0x000a => hello.groups = u16_list(body, 2),
            0x000b => hello.point_formats = body.get(1..).unwrap_or_default().to_vec(),
            0x000d => hello.signature_algorithms = u16_list(body, 2),
            0x002b => hello.versions = u16_list(body, 1),
            0x0010 => {
                let names = alpn_names(body);
                hello.first_alpn = names.first().cloned();
                protocols = names;
            }
            _ => {}
        }
    }
    Some(TlsClient {
        server_name,
        next_protocols: protocols
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
        ja3: ja::ja3(&hello),
        ja4: ja::ja4(&hello),
    })
}

/// What a ServerHello says.
struct ServerHello {
    version: u16,
    cipher: u16,
    alpn: Option<String>,
    /// A TLS 1.3 pre-shared key was accepted.
    psk: bool,
    /// It is a HelloRetryRequest.
    retry: bool,
}

fn parse_server_hello(msg: &[u8]) -> Option<ServerHello> {
    let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh)))) =
        tls_parser::parse_tls_message_handshake(msg)
    else {
        return None;
    };
    let mut out = ServerHello {
        version: sh.version.0,
        cipher: sh.cipher.0,
        alpn: None,
        psk: false,
        retry: sh.random == HELLO_RETRY,
    };
    for (kind, body) in extensions(sh.ext.unwrap_or_default())? {
        match kind {
            0x002b => out.version = be16(body, 0).unwrap_or(out.version),
            0x0010 => {
                out.alpn = alpn_names(body)
                    .first()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
            }
            0x0029 => out.psk = true,
            _ => {}
        }
    }
    Some(out)
}

/// `tls.server.*` of a DER certificate.
fn leaf_fields(der: &[u8]) -> Option<TlsServer> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(ip) => ip_text(ip),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let hash: String = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let validity = cert.validity();
    Some(TlsServer {
        subject: Some(cert.subject().to_string()),
        issuer: Some(cert.issuer().to_string()),
        not_before: Some(rfc3339(validity.not_before.timestamp())),
        not_after: Some(rfc3339(validity.not_after.timestamp())),
        x509: (!names.is_empty()).then_some(TlsX509 {
            alternative_names: names,
        }),
        hash: Some(TlsHash { sha256: hash }),
    })
}

fn ip_text(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => Some(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Some(std::net::Ipv6Addr::from(a).to_string())
        }
        _ => None,
    }
}

/// Unix seconds as RFC 3339 UTC (`2026-12-06T03:30:00Z`), by the civil-from-days
/// algorithm (no date crate needed for one format).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests;
