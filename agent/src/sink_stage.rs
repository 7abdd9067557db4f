//! Starting the configured sinks (`sinks:` in the config) as standing subscriptions of the
//! hub. A sink that cannot start (a TLS file that does not exist, a librdkafka property it
//! does not know) is one line naming the key, and `tapwire run` exits 2 before capturing.
//!
//! A sink with a `filter` gets a filter stage ([`Filtered`]): the capture worker only queues
//! a shared handle on the exchange ([`FILTER_QUEUE`] at most, then dropped and counted in
//! `tapwire_sink_filter_dropped_total{sink}`), and the stage's own thread evaluates the CEL
//! filter and hands what matches to the sink. So no filter, however slow, runs on a capture
//! worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use schemas::Exchange;
use sinks::kafka::KafkaSink;
use sinks::otlp::OtlpSink;
use sinks::red::RedMetrics;
use sinks::route::Routes;
use sinks::{Published, Sink};

use crate::config::Sinks;
use crate::demand::Hub;
use crate::filter::{Bindings, Filter};
use crate::metrics::Metrics;

fn filter(key: &str, text: &Option<String>) -> Result<Option<Filter>, String> {
    text.as_deref()
        .map(Filter::compile)
        .transpose()
        .map_err(|e| format!("{key}: {e}"))
}

/// Exchanges waiting for a sink's filter stage.
pub const FILTER_QUEUE: usize = 8192;

/// A sink behind its CEL filter, evaluated on the stage's own thread.
pub struct Filtered {
    inner: Arc<dyn Sink>,
    tx: SyncSender<Arc<Exchange>>,
    backlog: Arc<AtomicUsize>,
    dropped: prometheus::IntCounter,
}

impl Filtered {
    pub fn start(
        inner: Arc<dyn Sink>,
        filter: Filter,
        dropped: prometheus::IntCounter,
    ) -> std::io::Result<Filtered> {
        let (tx, rx) = sync_channel::<Arc<Exchange>>(FILTER_QUEUE);
        let backlog = Arc::new(AtomicUsize::new(0));
        let (sink, left) = (inner.clone(), backlog.clone());
        std::thread::Builder::new()
            .name(format!("tapwire-filter-{}", inner.name()))
            .stack_size(crate::capture::PIPELINE_STACK)
            .spawn(move || {
                for ex in rx {
                    if filter.matches(&Bindings::of(&ex)) {
                        sink.offer(&mut Published::shared(ex));
                    }
                    left.fetch_sub(1, Ordering::AcqRel);
                }
            })?;
        Ok(Filtered {
            inner,
            tx,
            backlog,
            dropped,
        })
    }
}

impl Sink for Filtered {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn offer(&self, ev: &mut Published) {
        self.backlog.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(ev.exchange().clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.backlog.fetch_sub(1, Ordering::AcqRel);
                self.dropped.inc();
            }
        }
    }

    fn queued(&self) -> u64 {
        self.inner.queued()
    }

    fn flush(&self, timeout: Duration) {
        let until = Instant::now() + timeout;
        while self.backlog.load(Ordering::Acquire) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.inner
            .flush(until.saturating_duration_since(Instant::now()));
    }
}

/// The sink, behind a filter stage when it has a filter.
fn staged(
    sink: Arc<dyn Sink>,
    filter: Option<Filter>,
    metrics: &Metrics,
) -> Result<Arc<dyn Sink>, String> {
    let Some(filter) = filter else {
        return Ok(sink);
    };
    let dropped = metrics
        .sink_filter_dropped
        .with_label_values(&[sink.name()]);
    let name = sink.name();
    Filtered::start(sink, filter, dropped)
        .map(|f| Arc::new(f) as Arc<dyn Sink>)
        .map_err(|e| format!("sinks.{name}: cannot start its filter thread: {e}"))
}

/// A hub with the configured sinks added.
pub fn build(
    cfg: &Sinks,
    metrics: &Metrics,
    routes: &Arc<Routes>,
    rt: &tokio::runtime::Handle,
) -> Result<Hub, String> {
    let mut hub = Hub::default();
    if let Some(p) = &cfg.prometheus {
        let red = RedMetrics::new(
            &metrics.registry,
            p.config,
            routes.clone(),
            metrics.sinks.clone(),
        )
        .map_err(|e| format!("sinks.prometheus: {e}"))?;
        let f = filter("sinks.prometheus.filter", &p.filter)?;
        hub.add_sink(staged(Arc::new(red), f, metrics)?);
    }
    if let Some(o) = &cfg.otlp {
        let sink = OtlpSink::start(o.config.clone(), routes.clone(), metrics.sinks.clone(), rt)?;
        let f = filter("sinks.otlp.filter", &o.filter)?;
        hub.add_sink(staged(Arc::new(sink), f, metrics)?);
    }
    if let Some(k) = &cfg.kafka {
        let sink = KafkaSink::start(k.config.clone(), metrics.sinks.clone())?;
        let f = filter("sinks.kafka.filter", &k.filter)?;
        hub.add_sink(staged(Arc::new(sink), f, metrics)?);
    }
    Ok(hub)
}

/// `, sinks: prometheus, otlp grpc http://…, kafka h:9092 topic t` for the start-up line.
pub fn describe(cfg: &Sinks) -> String {
    let mut parts = Vec::new();
    if cfg.prometheus.is_some() {
        parts.push("RED metrics".to_string());
    }
    if let Some(o) = &cfg.otlp {
        parts.push(format!(
            "OTLP {} {}",
            match o.config.transport {
                sinks::otlp::Transport::Grpc => "grpc",
                sinks::otlp::Transport::HttpProtobuf => "http/protobuf",
            },
            o.config.endpoint
        ));
    }
    if let Some(k) = &cfg.kafka {
        parts.push(format!(
            "Kafka {} topic {}",
            k.config.brokers, k.config.topic
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(", sinks: {}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[derive(Default)]
    struct Counting(AtomicU64);

    impl Sink for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn offer(&self, _ev: &mut Published) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn ex(status: schemas::Status) -> Exchange {
        let mut e = Exchange::new(
            schemas::Protocol::Http,
            schemas::Transport::Tcp,
            schemas::Peer::new("10.0.0.1", 1),
            schemas::Peer::new("10.0.0.2", 80),
            1,
        );
        e.status = status;
        e
    }

    #[test]
    fn a_filtered_sink_gets_what_its_filter_accepts_off_the_caller() {
        let inner = Arc::new(Counting::default());
        let metrics = Metrics::new();
        let f = Filter::compile(r#"status == "error""#).unwrap();
        let dropped = metrics.sink_filter_dropped.with_label_values(&["counting"]);
        let staged = Filtered::start(inner.clone(), f, dropped.clone()).unwrap();
        for s in [
            schemas::Status::Ok,
            schemas::Status::Error,
            schemas::Status::Ok,
        ] {
            staged.offer(&mut Published::new(ex(s)));
        }
        staged.offer(&mut Published::new(ex(schemas::Status::Error)));
        staged.flush(Duration::from_secs(10));
        assert_eq!(inner.0.load(Ordering::Relaxed), 2);
        assert_eq!(dropped.get(), 0);
    }

    #[test]
    fn a_slow_filter_drops_and_counts_instead_of_blocking_the_worker() {
        let inner = Arc::new(Counting::default());
        let metrics = Metrics::new();
        // Two nested macros over 300-element lists: far slower than offering.
        let list = (0..300)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let slow = format!("[{list}].all(x, [{list}].exists(y, y == x))");
        let f = Filter::compile(&slow).unwrap();
        let dropped = metrics.sink_filter_dropped.with_label_values(&["counting"]);
        let staged = Filtered::start(inner.clone(), f, dropped.clone()).unwrap();
        // Offering never waits for the filter: what the stage cannot take is dropped.
        for _ in 0..FILTER_QUEUE + 500 {
            staged.offer(&mut Published::new(ex(schemas::Status::Ok)));
        }
        assert!(dropped.get() >= 400, "dropped {}", dropped.get());
    }
}
