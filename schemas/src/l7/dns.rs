//! DNS fields (`dns.*`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `dns.question.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DnsQuestion {
    /// Queried name without the trailing dot (`.` for the root).
    pub name: String,
    /// Query type mnemonic (`A`, `AAAA`, …), or `TYPE<n>` for types without one.
    #[serde(rename = "type")]
    pub qtype: String,
}

/// One resource record of the answer section, in presentation form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DnsAnswer {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    /// Record data in presentation (zone-file) form; RFC 3597 `\# len hex` for types
    /// without a dedicated form.
    pub data: String,
}

/// `dns.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Dns {
    /// Message id.
    pub id: u16,
    /// Opcode mnemonic (`QUERY`, `NOTIFY`, `UPDATE`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opcode: Option<String>,
    /// First question (absent when the message has none, or it was cut off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<DnsQuestion>,
    /// Response code mnemonic (`NOERROR`, `NXDOMAIN`, …), with the EDNS extended bits applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<String>,
    /// Answer section.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<DnsAnswer>,
    /// EDNS(0) UDP payload size the query advertised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edns_udp_payload_size: Option<u16>,
}

/// The table line's part of a DNS exchange: question, response code, answer count.
pub fn summary(ex: &crate::Exchange, s: &mut String) {
    use std::fmt::Write as _;
    let Some(dns) = &ex.dns else {
        return;
    };
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
}
