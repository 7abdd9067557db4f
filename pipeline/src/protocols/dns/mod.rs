//! DNS over UDP and over TCP (RFC 1035 §4.2.2 two-byte length prefix, several messages per
//! segment).
//!
//! Messages are decoded by `hickory-proto` (full RR coverage, presentation forms). When it
//! rejects a message (cut by the snaplen, or malformed) the header and first question are
//! still read by a small reader here, so the exchange keeps its id, name and type, and the
//! anomaly (`dns.truncated` or `dns.malformed`) is recorded on it.
//!
//! Pairing: by message id within the flow, oldest first, at most
//! `pairing::DEFAULT_IN_FLIGHT` queries in flight and [`QUERY_TIMEOUT_NS`] of capture time;
//! a query with no answer by then (or by flow end) is `no_response`. A response without its
//! query (capture started late) is still an exchange, from the response alone
//! (`dns.response_without_query`). Over TCP a message is at most 65535 bytes, so the flow
//! layer's pending cap always holds one.
//!
//! Multicast DNS (port 5353, RFC 6762) uses id 0 for everything and answers without repeating
//! the question: a response pairs with the oldest query whose first question it answers (its
//! own question, or an answer record of that name and type, any type for `ANY`), and one that
//! answers none is an announcement, an exchange of its own (not an anomaly there).
//!
//! DNSSEC records (RRSIG, DNSKEY, DS, NSEC, NSEC3, …) are decoded to their presentation form
//! by hickory's `dnssec-ring` feature; nothing is validated.

use hickory_proto::op::Message;
use schemas::l7::dns::{Dns, DnsAnswer, DnsQuestion};
use schemas::{Exchange, Protocol, Status, Transport};

use crate::dissect::entry::Detection;
use crate::dissect::entry::ProtocolEntry;
use crate::dissect::pairing::{ById, DEFAULT_IN_FLIGHT};
use crate::dissect::{Direction, Dissector, Emitter, FlowMeta, Progress};
use crate::wire::be16;

crate::anomalies! {
    /// What this dissector counts (ARCHITECTURE.md §3 lists the caps behind some).
    pub enum Anomaly {
        Gap = "dns.gap",
        Malformed = "dns.malformed",
        ResponseWithoutQuery = "dns.response_without_query",
        Truncated = "dns.truncated",
    }
}

/// A query unanswered for this long (capture time) is reported as `no_response`.
pub const QUERY_TIMEOUT_NS: u64 = 10_000_000_000;

pub const ENTRY: ProtocolEntry = ProtocolEntry {
    protocol: Protocol::Dns,
    tcp: true,
    udp: true,
    ports: &[53, 5353, 5355],
    detect,
    new: |meta: &FlowMeta| {
        let mut d = DnsDissector::new(meta.transport);
        d.mdns =
            meta.transport == Transport::Udp && (meta.server.1 == 5353 || meta.client.1 == 5353);
        Box::new(d)
    },
};

/// Header sanity: plausible opcode, counts, and (for queries) a question. The reserved Z bit
/// is not checked: some resolvers set it.
fn plausible_header(m: &[u8]) -> Option<bool> {
    let flags = be16(m, 2)?;
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let (qd, an, ns, ar) = (be16(m, 4)?, be16(m, 6)?, be16(m, 8)?, be16(m, 10)?);
    let sane = matches!(opcode, 0 | 1 | 2 | 4 | 5)
        && qd <= 4
        && an <= 512
        && ns <= 512
        && ar <= 512
        && (qr || (qd >= 1 || opcode == 5) && an <= 16);
    sane.then_some(qr)
}

fn detect(data: &[u8], t: Transport, _hinted: bool) -> Detection {
    let msg = match t {
        Transport::Udp => data,
        Transport::Tcp => {
            let Some(len) = be16(data, 0) else {
                return Detection::NeedMore;
            };
            if len < 12 {
                return Detection::No;
            }
            data.get(2..).unwrap_or_default()
        }
    };
    if msg.len() < 12 {
        return if t == Transport::Tcp {
            Detection::NeedMore
        } else {
            Detection::No
        };
    }
    match plausible_header(msg) {
        // A question name must follow the header and start with a sane label length.
        Some(qr) if msg.len() == 12 || msg[12] < 64 || msg[12] & 0xc0 == 0xc0 => {
            if qr {
                Detection::FromServer
            } else {
                Detection::FromClient
            }
        }
        _ => Detection::No,
    }
}

/// A parsed message, reduced to what events carry.
struct Parsed {
    id: u16,
    response: bool,
    dns: Dns,
    anomaly: Option<Anomaly>,
}

fn rcode_name(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADVERS".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        19 => "BADMODE".into(),
        20 => "BADNAME".into(),
        21 => "BADALG".into(),
        22 => "BADTRUNC".into(),
        23 => "BADCOOKIE".into(),
        n => format!("RCODE{n}"),
    }
}

fn opcode_name(code: u8) -> String {
    match code {
        0 => "QUERY".into(),
        1 => "IQUERY".into(),
        2 => "STATUS".into(),
        4 => "NOTIFY".into(),
        5 => "UPDATE".into(),
        6 => "DSO".into(),
        n => format!("OPCODE{n}"),
    }
}

fn type_name(code: u16) -> String {
    let t = hickory_proto::rr::RecordType::from(code);
    let s = t.to_string();
    if s.starts_with("Unknown") || s.is_empty() {
        format!("TYPE{code}")
    } else {
        s
    }
}

/// A domain name in presentation form without the trailing dot (`.` for the root).
fn name_text(n: &hickory_proto::rr::Name) -> String {
    if n.is_root() {
        return ".".into();
    }
    let mut s = n.to_string();
    if s.ends_with('.') && s.len() > 1 {
        s.pop();
    }
    s
}

/// Decode one DNS message.
fn parse(msg: &[u8]) -> Option<Parsed> {
    if msg.len() < 12 {
        return None;
    }
    let (id, flags) = (be16(msg, 0)?, be16(msg, 2)?);
    let response = flags & 0x8000 != 0;
    let opcode = ((flags >> 11) & 0xf) as u8;
    match Message::from_vec(msg) {
        Ok(m) => {
            let question = m.queries.first().map(|q| DnsQuestion {
                name: name_text(&q.name),
                qtype: type_name(u16::from(q.query_type)),
            });
            let answers = m
                .answers
                .iter()
                .map(|r| DnsAnswer {
                    name: name_text(&r.name),
                    rtype: type_name(u16::from(r.record_type())),
                    ttl: r.ttl,
                    data: r.data.to_string(),
                })
                .collect();
            let rcode = u16::from(m.metadata.response_code);
            Some(Parsed {
                id,
                response,
                dns: Dns {
                    id,
                    opcode: Some(opcode_name(opcode)),
                    question,
                    response_code: response.then(|| rcode_name(rcode)),
                    answers,
                    edns_udp_payload_size: if response {
                        None
                    } else {
                        m.edns.as_ref().map(|e| e.max_payload())
                    },
                },
                anomaly: None,
            })
        }
        Err(e) => {
            // hickory rejected it: keep what the header and first question say.
            let (question, cut_in_question) = first_question(msg);
            let cut = cut_in_question
                || matches!(
                    e,
                    hickory_proto::serialize::binary::DecodeError::InsufficientBytes
                );
            Some(Parsed {
                id,
                response,
                dns: Dns {
                    id,
                    opcode: Some(opcode_name(opcode)),
                    question,
                    response_code: response.then(|| rcode_name(flags & 0xf)),
                    answers: Vec::new(),
                    edns_udp_payload_size: None,
                },
                anomaly: Some(if cut {
                    Anomaly::Truncated
                } else {
                    Anomaly::Malformed
                }),
            })
        }
    }
}

/// Read the first question of a message hickory could not decode. Returns the question if
/// it is whole, and whether the message ended early (cut rather than malformed).
fn first_question(msg: &[u8]) -> (Option<DnsQuestion>, bool) {
    let qdcount = be16(msg, 4);
    if qdcount.unwrap_or(0) == 0 {
        return (None, false);
    }
    let mut labels: Vec<String> = Vec::new();
    let mut pos = 12usize;
    let mut end_of_name = None;
    let mut jumps = 0;
    loop {
        let Some(&len) = msg.get(pos) else {
            return (None, true);
        };
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    end_of_name.get_or_insert(pos + 1);
                    break;
                }
                let start = pos + 1;
                let Some(label) = msg.get(start..start + usize::from(len)) else {
                    return (None, true);
                };
                labels.push(escape_label(label));
                pos = start + usize::from(len);
            }
            0xc0 => {
                let Some(&lo) = msg.get(pos + 1) else {
                    return (None, true);
                };
                end_of_name.get_or_insert(pos + 2);
                jumps += 1;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                if jumps > 32 || target >= pos {
                    return (None, false);
                }
                pos = target;
            }
            _ => return (None, false),
        }
    }
    let Some(qend) = end_of_name else {
        return (None, true);
    };
    let Some(qtype) = be16(msg, qend) else {
        return (None, true);
    };
    let name = if labels.is_empty() {
        ".".to_string()
    } else {
        labels.join(".")
    };
    (
        Some(DnsQuestion {
            name,
            qtype: type_name(qtype),
        }),
        msg.len() < qend + 4,
    )
}

/// A label in presentation form (RFC 1035 §5.1 escapes).
fn escape_label(label: &[u8]) -> String {
    let mut s = String::with_capacity(label.len());
    for &b in label {
        match b {
            b'.' | b'\\' => {
                s.push('\\');
                s.push(b as char);
            }
            0x21..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\{b:03}")),
        }
    }
    s
}

struct Query {
    ts: u64,
    dns: Dns,
    anomaly: Option<Anomaly>,
}

/// DNS dissector state for one flow.
pub struct DnsDissector {
    transport: Transport,
    queries: ById<u16, Query>,
    /// A TCP gap broke the length framing; waiting for a message start.
    lost: bool,
    /// Multicast DNS: responses pair by question, not by id (see the module doc).
    mdns: bool,
}

/// Whether a response (its question and answers) answers `asked`.
fn answers(asked: &DnsQuestion, question: Option<&DnsQuestion>, records: &[DnsAnswer]) -> bool {
    let same = |name: &str| name.eq_ignore_ascii_case(&asked.name);
    question.is_some_and(|q| same(&q.name) && q.qtype == asked.qtype)
        || records
            .iter()
            .any(|r| same(&r.name) && (asked.qtype == "ANY" || r.rtype == asked.qtype))
}

impl DnsDissector {
    pub fn new(transport: Transport) -> Self {
        DnsDissector {
            transport,
            queries: ById::new(DEFAULT_IN_FLIGHT, QUERY_TIMEOUT_NS),
            lost: false,
            mdns: false,
        }
    }

    fn unanswered(q: Query, out: &mut Emitter<'_>) {
        let mut ex = out.exchange(Protocol::Dns, q.ts);
        ex.status = Status::NoResponse;
        if let Some(a) = q.anomaly {
            ex.add_anomaly(a.name());
        }
        ex.dns = Some(Box::new(q.dns));
        out.emit(ex);
    }

    fn message(&mut self, msg: &[u8], ts: u64, out: &mut Emitter<'_>) {
        for q in self.queries.expire(ts) {
            Self::unanswered(q, out);
        }
        let Some(p) = parse(msg) else {
            out.anomaly(Anomaly::Truncated);
            return;
        };
        if let Some(a) = p.anomaly {
            out.anomaly(a);
        }
        if !p.response {
            let q = Query {
                ts,
                dns: p.dns,
                anomaly: p.anomaly,
            };
            if let Some(old) = self.queries.push(p.id, ts, q) {
                out.anomaly(crate::dissect::anomaly::Common::PairingEvicted);
                Self::unanswered(old, out);
            }
            return;
        }
        let query = if self.mdns {
            let (question, records) = (p.dns.question.as_ref(), &p.dns.answers);
            self.queries.take_first(|q| {
                q.dns
                    .question
                    .as_ref()
                    .is_some_and(|asked| answers(asked, question, records))
            })
        } else {
            self.queries.take(&p.id)
        };
        let start = query.as_ref().map_or(ts, |q| q.ts);
        let mut ex: Exchange = out.exchange(Protocol::Dns, start);
        ex.end_time_unix_nano = ts;
        let mut dns = p.dns;
        match query {
            Some(q) => {
                if dns.question.is_none() {
                    dns.question = q.dns.question;
                }
                dns.edns_udp_payload_size = q.dns.edns_udp_payload_size;
                if let Some(a) = q.anomaly {
                    ex.add_anomaly(a.name());
                }
            }
            // An mDNS announcement answers nobody in particular.
            None if self.mdns => {}
            None => {
                out.anomaly(Anomaly::ResponseWithoutQuery);
                ex.add_anomaly(Anomaly::ResponseWithoutQuery.name());
            }
        }
        ex.status = match (&p.anomaly, dns.response_code.as_deref()) {
            (Some(Anomaly::Truncated), _) => Status::Incomplete,
            (_, Some("NOERROR")) => Status::Ok,
            _ => Status::Error,
        };
        if let Some(a) = p.anomaly {
            ex.add_anomaly(a.name());
        }
        ex.dns = Some(Box::new(dns));
        out.emit(ex);
    }
}

impl Dissector for DnsDissector {
    fn held_bytes(&self) -> usize {
        self.queries.held_bytes(|_| 256)
    }

    fn feed(&mut self, _dir: Direction, data: &[u8], ts: u64, out: &mut Emitter<'_>) -> Progress {
        if self.transport == Transport::Udp {
            self.message(data, ts, out);
            return Progress::Done;
        }
        if self.lost {
            if matches!(detect(data, Transport::Tcp, true), Detection::No) {
                return Progress::Done;
            }
            self.lost = false;
        }
        let mut pos = 0;
        while let Some(len) = be16(data, pos) {
            let len = usize::from(len);
            let Some(msg) = data.get(pos + 2..pos + 2 + len) else {
                return Progress::Incomplete {
                    consumed: pos,
                    needed: pos + 2 + len - data.len(),
                };
            };
            self.message(msg, ts, out);
            pos += 2 + len;
        }
        if pos == data.len() {
            Progress::Done
        } else {
            Progress::Incomplete {
                consumed: pos,
                needed: 2 - (data.len() - pos),
            }
        }
    }

    fn gap(&mut self, _dir: Direction, _len: u64, _ts: u64, out: &mut Emitter<'_>) {
        // Over TCP the length prefixes are lost with the bytes: parsing resumes at the next
        // chunk that starts with a plausible length prefix and header.
        out.anomaly(Anomaly::Gap);
        self.lost = true;
    }

    fn is_idle(&self) -> bool {
        self.queries.is_empty()
    }

    fn close(&mut self, _ts: u64, out: &mut Emitter<'_>) {
        for q in self.queries.drain().collect::<Vec<_>>() {
            Self::unanswered(q, out);
        }
    }
}

#[cfg(test)]
mod tests;
