//! Kafka messages: each exchange as one JSON message in the event contract's shape, produced
//! with `rdkafka` (librdkafka, built vendored).
//!
//! - Topic: one name, or a template with `{protocol}` (`tapwire.{protocol}` →
//!   `tapwire.http`, `tapwire.kafka`, …).
//! - Key: the connection (`client:port>server:port`), so one connection's exchanges land in one
//!   partition and keep their order.
//! - Headers: `tapwire.protocol` and `tapwire.schema.version`.
//! - Any librdkafka property passes through (`security.protocol`, `sasl.*`, `ssl.*`,
//!   `compression.type`, `acks`, `linger.ms`, …); librdkafka rejects unknown ones when the
//!   sink starts, and the message names the key.
//!
//! Delivery never blocks the capture worker: [`KafkaSink::offer`] puts a reference to the
//! exchange on a hand-off queue; the sink's own thread serialises it and hands the message to
//! librdkafka's queue (64 MiB at most unless `queue.buffering.max.kbytes` says otherwise).
//! Together they hold at most [`KafkaConfig::queue`] exchanges: past that, or past
//! librdkafka's byte limit, the exchange is dropped (`reason="queue_full"`). While a broker is down librdkafka keeps the queued messages and
//! retries; what it gives up on (after `message.timeout.ms`, 5 minutes by default) comes back
//! in a delivery report and is counted by its error (`reason="MessageTimedOut"`, …).
//! Delivery reports that succeed count as delivered, so `offered = delivered + dropped +
//! queued` always holds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use schemas::Exchange;

use crate::{Published, Sink, SinkMetrics, connection_key};

const SINK: &str = "kafka";

/// The Kafka sink's configuration (the `sinks.kafka` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port,host:port` (`bootstrap.servers`).
    pub brokers: String,
    /// Topic name, or a template with `{protocol}`.
    pub topic: String,
    /// Exchanges waiting (for the sink's thread or in librdkafka) before new ones are dropped.
    pub queue: usize,
    /// librdkafka properties, passed through.
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            topic: topic.into(),
            queue: 100_000,
            properties: Vec::new(),
        }
    }

    /// Check without I/O; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.split(',').any(|b| {
            let b = b.trim();
            b.rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        }) {
            return Err(format!(
                "sinks.kafka.brokers: {:?} is not a list of host:port",
                self.brokers
            ));
        }
        let probe = self.topic.replace("{protocol}", "http");
        if probe.is_empty()
            || probe.len() > 249
            || !probe
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(format!(
                "sinks.kafka.topic: {:?} is not a topic name (letters, digits, . _ - and {{protocol}})",
                self.topic
            ));
        }
        if !(1..=10_000_000).contains(&self.queue) {
            return Err(format!(
                "sinks.kafka.queue: {} is not between 1 and 10000000",
                self.queue
            ));
        }
        for (k, _) in &self.properties {
            if k == "bootstrap.servers" {
                return Err(
                    "sinks.kafka.properties.bootstrap.servers: use sinks.kafka.brokers".into(),
                );
            }
        }
        Ok(())
    }

    fn topic_for(&self, protocol: &str) -> String {
        self.topic.replace("{protocol}", protocol)
    }
}

/// Counts librdkafka's delivery reports.
struct Reports {
    counters: SinkMetrics,
    delivered: prometheus::IntCounter,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.inc(),
            Err((e, _)) => self.counters.drop_n(SINK, &reason(e), 1),
        }
    }
}

fn reason(e: &KafkaError) -> String {
    match e.rdkafka_error_code() {
        Some(c) => format!("{c:?}"),
        None => "other".into(),
    }
}

/// The running sink: a hand-off queue and the thread that produces.
pub struct KafkaSink {
    tx: Mutex<Option<SyncSender<Arc<Exchange>>>>,
    cap: u64,
    offered: prometheus::IntCounter,
    producer: ThreadedProducer<Reports>,
    counters: SinkMetrics,
    /// Exchanges in the hand-off queue or being produced.
    waiting: Arc<AtomicU64>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl KafkaSink {
    /// Create the producer (it connects in the background) and the sink's thread.
    pub fn start(cfg: KafkaConfig, counters: SinkMetrics) -> Result<KafkaSink, String> {
        cfg.validate()?;
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &cfg.brokers)
            .set("queue.buffering.max.messages", cfg.queue.to_string())
            .set("queue.buffering.max.kbytes", "65536")
            .set("client.id", "tapwire");
        for (k, v) in &cfg.properties {
            cc.set(k, v);
        }
        let producer: ThreadedProducer<Reports> = cc
            .create_with_context(Reports {
                counters: counters.clone(),
                delivered: counters.of(SINK).1,
            })
            .map_err(|e| format!("sinks.kafka.properties: {e}"))?;
        let cap = cfg.queue;
        let (tx, rx) = sync_channel(cap);
        let waiting = Arc::new(AtomicU64::new(0));
        let thread = {
            let (producer, counters, waiting) =
                (producer.clone(), counters.clone(), waiting.clone());
            std::thread::Builder::new()
                .name("tapwire-kafka".into())
                .spawn(move || produce_loop(rx, cfg, producer, counters, waiting))
                .map_err(|e| format!("sinks.kafka: cannot start its thread: {e}"))?
        };
        Ok(KafkaSink {
            tx: Mutex::new(Some(tx)),
            cap: cap as u64,
            offered: counters.of(SINK).0,
            producer,
            counters,
            waiting,
            thread: Mutex::new(Some(thread)),
        })
    }
}

fn produce_loop(
    rx: Receiver<Arc<Exchange>>,
    cfg: KafkaConfig,
    producer: ThreadedProducer<Reports>,
    counters: SinkMetrics,
    waiting: Arc<AtomicU64>,
) {
    let warned = AtomicBool::new(false);
    while let Ok(ex) = rx.recv() {
        produce(&cfg, &producer, &counters, &warned, &ex);
        waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

fn produce(
    cfg: &KafkaConfig,
    producer: &ThreadedProducer<Reports>,
    counters: &SinkMetrics,
    warned: &AtomicBool,
    ex: &Exchange,
) {
    let Some(line) = crate::json_line(ex) else {
        counters.drop_n(SINK, "encode_error", 1);
        return;
    };
    let payload = line.strip_suffix(b"\n").unwrap_or(&line);
    let protocol = ex.protocol.as_str();
    let topic = cfg.topic_for(protocol);
    let key = connection_key(ex);
    let headers = OwnedHeaders::new_with_capacity(2)
        .insert(Header {
            key: "tapwire.protocol",
            value: Some(protocol),
        })
        .insert(Header {
            key: "tapwire.schema.version",
            value: Some(schemas::SCHEMA_VERSION),
        });
    let record = BaseRecord::to(&topic)
        .key(&key)
        .payload(payload)
        .headers(headers);
    if let Err((e, _)) = producer.send(record) {
        let r = match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => "queue_full".to_string(),
            _ => reason(&e),
        };
        counters.drop_n(SINK, &r, 1);
        if !warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "tapwire: sinks.kafka: cannot queue a message for {topic} ({e}); such losses are counted in tapwire_sink_dropped_total"
            );
        }
    }
}

impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        SINK
    }

    fn offer(&self, ev: &mut Published) {
        self.offered.inc();
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else {
            self.counters.drop_n(SINK, "stopped", 1);
            return;
        };
        if self.queued() >= self.cap {
            self.counters.drop_n(SINK, "queue_full", 1);
            return;
        }
        // Counted before it is sent, so the thread never takes away more than was added.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = tx.try_send(ev.exchange().clone()) {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            let reason = match e {
                TrySendError::Full(_) => "queue_full",
                TrySendError::Disconnected(_) => "stopped",
            };
            self.counters.drop_n(SINK, reason, 1);
        }
    }

    fn queued(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
            + u64::try_from(self.producer.in_flight_count()).unwrap_or(0)
    }

    fn flush(&self, timeout: Duration) {
        // Closing the hand-off queue ends the thread once it has produced what was queued.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        let _ = self.producer.flush(timeout);
    }
}

/// The keys under `sinks.kafka:` in the agent's configuration (flags already merged in by
/// the agent: they win over the file).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaFile {
    pub brokers: Option<String>,
    pub topic: Option<String>,
    pub queue: Option<usize>,
    /// librdkafka properties: strings, numbers or booleans.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, serde_json::Value>,
    /// A CEL filter (checked by the agent, which evaluates it).
    pub filter: Option<String>,
}

impl KafkaFile {
    /// The sink's configuration, or `None` without brokers (other keys without brokers are
    /// an error naming them). `TAPWIRE_KAFKA_PROPERTIES` (`k=v,…`) adds properties the file
    /// does not set: credentials kept out of the file (the chart passes them from a Secret).
    pub fn resolve(self) -> Result<Option<KafkaConfig>, String> {
        use crate::settings::{env, key_values};
        let k = self;
        let Some(brokers) = k.brokers else {
            if k.topic.is_some() || !k.properties.is_empty() {
                return Err("sinks.kafka.brokers: missing".into());
            }
            return Ok(None);
        };
        let topic = k.topic.unwrap_or_else(|| "tapwire.exchanges".into());
        let mut c = KafkaConfig::new(brokers, topic);
        if let Some(n) = k.queue {
            c.queue = n;
        }
        for (key, v) in k.properties {
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(format!(
                        "sinks.kafka.properties.{key}: not a string, number or boolean"
                    ));
                }
            };
            c.properties.push((key, v));
        }
        if let Some(text) = env("TAPWIRE_KAFKA_PROPERTIES") {
            for (key, v) in key_values("TAPWIRE_KAFKA_PROPERTIES", &text)? {
                if !c.properties.iter().any(|(k, _)| *k == key) {
                    c.properties.push((key, v));
                }
            }
        }
        c.validate()?;
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_key() {
        let ok = KafkaConfig::new("127.0.0.1:9092,broker-2:9093", "tapwire.{protocol}");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.topic_for("dns"), "tapwire.dns");
        let bad = |f: &dyn Fn(&mut KafkaConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().expect_err("rejected")
        };
        assert!(bad(&|c| c.brokers = "localhost".into()).starts_with("sinks.kafka.brokers:"));
        assert!(bad(&|c| c.brokers = "h:99999".into()).starts_with("sinks.kafka.brokers:"));
        assert!(bad(&|c| c.topic = "a topic".into()).starts_with("sinks.kafka.topic:"));
        assert!(bad(&|c| c.topic = "{proto}".into()).starts_with("sinks.kafka.topic:"));
        assert!(bad(&|c| c.queue = 0).starts_with("sinks.kafka.queue:"));
    }

    #[test]
    fn an_unknown_property_is_refused_at_start_naming_it() {
        let mut c = KafkaConfig::new("127.0.0.1:1", "t");
        c.properties.push(("no.such.property".into(), "1".into()));
        let r = prometheus::Registry::new();
        let err = KafkaSink::start(c, SinkMetrics::new(&r).expect("registers"))
            .err()
            .expect("refused");
        assert!(
            err.starts_with("sinks.kafka.properties:") && err.contains("no.such.property"),
            "{err}"
        );
    }
}
