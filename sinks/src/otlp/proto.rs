//! The OTLP request, built straight from the exchanges: one protobuf `Span` per exchange
//! (`opentelemetry-proto`'s prost types), grouped into one `ResourceSpans` per workload.
//!
//! Why not the SDK's `SpanData` and `opentelemetry-otlp`'s exporter: that path built each
//! span three times (the semantic-convention view, `SpanData`, the protobuf), cloned the
//! whole batch before converting it and copied every attribute key and string value again
//! on the way (`bench/sinks.sh` measured 5–7 µs of exporter CPU per span). Here the view's
//! strings move into the protobuf; each attribute key is the one allocation left.
//!
//! Ids: start and end are the exchange's first request and last response byte; when the
//! request carried a W3C `traceparent`, the span joins that trace with the caller's span as
//! its remote parent, otherwise it starts a new trace. Span ids are random ([`IdGen`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use schemas::Exchange;

use crate::route::Routes;
use crate::semconv::{self, Kind, Options, Value};

/// `SpanFlags`: the W3C trace flags (sampled) and whether the parent is known to be remote.
const SAMPLED: u32 = 0x01;
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;
/// `Status.code`.
const STATUS_ERROR: i32 = 2;

/// Random span and trace ids (splitmix64 seeded from the clock, the process and a counter):
/// unique enough for ids, never zero.
pub struct IdGen(u64);

static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

impl IdGen {
    pub fn new() -> IdGen {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let c = SEED_COUNTER.fetch_add(1, Ordering::Relaxed);
        IdGen(t ^ (u64::from(std::process::id()) << 32) ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        loop {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            if z != 0 {
                return z;
            }
        }
    }
}

impl Default for IdGen {
    fn default() -> Self {
        IdGen::new()
    }
}

/// `N` bytes from lowercase or uppercase hex, `None` unless exactly `2N` hex digits and not
/// all zero (an invalid W3C id).
fn id_from_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let h = hex.as_bytes();
    if h.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(h.chunks_exact(2)) {
        let (&[hi, lo], _) = pair.split_at(2) else {
            return None;
        };
        *o = digit(hi)? << 4 | digit(lo)?;
    }
    out.iter().any(|b| *b != 0).then_some(out)
}

/// The protobuf value of one attribute (moves its strings).
fn any(v: Value) -> AnyValue {
    let value = match v {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Bool(b) => any_value::Value::BoolValue(b),
        Value::StrList(l) => any_value::Value::ArrayValue(ArrayValue {
            values: l
                .into_iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                })
                .collect(),
        }),
    };
    AnyValue { value: Some(value) }
}

/// A string attribute (resources, scope).
pub fn kv(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(any(Value::Str(value.into()))),
        ..KeyValue::default()
    }
}

/// The span of one exchange.
pub fn span(ex: &Exchange, routes: &Routes, opts: Options, ids: &mut IdGen) -> Span {
    let view = semconv::span(ex, routes, opts);
    let parent = ex
        .trace_id
        .as_deref()
        .and_then(id_from_hex::<16>)
        .zip(ex.span_id.as_deref().and_then(id_from_hex::<8>));
    let (trace_id, parent_span_id, flags) = match parent {
        Some((t, s)) => (t.to_vec(), s.to_vec(), SAMPLED | HAS_IS_REMOTE | IS_REMOTE),
        None => {
            let mut t = Vec::with_capacity(16);
            t.extend_from_slice(&ids.next().to_be_bytes());
            t.extend_from_slice(&ids.next().to_be_bytes());
            (t, Vec::new(), SAMPLED | HAS_IS_REMOTE)
        }
    };
    Span {
        trace_id,
        span_id: ids.next().to_be_bytes().to_vec(),
        parent_span_id,
        flags,
        name: view.name,
        kind: match view.kind {
            Kind::Server => span::SpanKind::Server,
            Kind::Client => span::SpanKind::Client,
            Kind::Producer => span::SpanKind::Producer,
            Kind::Consumer => span::SpanKind::Consumer,
        } as i32,
        start_time_unix_nano: ex.start_time_unix_nano,
        end_time_unix_nano: ex.end_time_unix_nano.max(ex.start_time_unix_nano),
        attributes: view
            .attributes
            .into_iter()
            .map(|(k, v)| KeyValue {
                key: k.to_owned(),
                value: Some(any(v)),
                ..KeyValue::default()
            })
            .collect(),
        status: view.error.map(|message| Status {
            message,
            code: STATUS_ERROR,
        }),
        ..Span::default()
    }
}

/// The scope of every span: `tapwire` with the agent's version.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "tapwire".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    }
}

/// One resource's spans, ready to send.
pub fn resource_spans(
    resource: &Resource,
    scope: &InstrumentationScope,
    spans: Vec<Span>,
) -> ResourceSpans {
    ResourceSpans {
        resource: Some(resource.clone()),
        scope_spans: vec![ScopeSpans {
            scope: Some(scope.clone()),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_exact_and_never_zero() {
        assert_eq!(
            id_from_hex::<8>("00f067aa0ba902b7"),
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert_eq!(
            id_from_hex::<8>("00F067AA0BA902B7"),
            id_from_hex::<8>("00f067aa0ba902b7")
        );
        assert_eq!(id_from_hex::<8>("0000000000000000"), None, "the invalid id");
        assert_eq!(id_from_hex::<8>("00f067aa0ba902b"), None, "too short");
        assert_eq!(id_from_hex::<8>("00f067aa0ba902b7a"), None, "too long");
        assert_eq!(id_from_hex::<8>("00f067aa0ba902bz"), None, "not hex");
        assert_eq!(
            id_from_hex::<8>("+0f067aa0ba902b7"),
            None,
            "a sign is not a digit"
        );
        assert_eq!(id_from_hex::<1>("é"), None, "two bytes, not two digits");
    }
}
