//! Starting the configured sinks (`sinks:` in the config) as standing subscriptions of the
//! hub. A sink that cannot start (a TLS file that does not exist, a librdkafka property it
//! does not know) is one line naming the key, and `tapwire run` exits 2 before capturing.

use std::sync::Arc;

use pipeline::sink::kafka::KafkaSink;
use pipeline::sink::otlp::OtlpSink;
use pipeline::sink::red::RedMetrics;
use pipeline::sink::route::Routes;

use crate::config::Sinks;
use crate::demand::Hub;
use crate::filter::Filter;
use crate::metrics::Metrics;

fn filter(key: &str, text: &Option<String>) -> Result<Option<Filter>, String> {
    text.as_deref()
        .map(Filter::compile)
        .transpose()
        .map_err(|e| format!("{key}: {e}"))
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
        hub.add_sink(Arc::new(red), filter("sinks.prometheus.filter", &p.filter)?);
    }
    if let Some(o) = &cfg.otlp {
        let sink = OtlpSink::start(o.config.clone(), routes.clone(), metrics.sinks.clone(), rt)?;
        hub.add_sink(Arc::new(sink), filter("sinks.otlp.filter", &o.filter)?);
    }
    if let Some(k) = &cfg.kafka {
        let sink = KafkaSink::start(k.config.clone(), metrics.sinks.clone())?;
        hub.add_sink(Arc::new(sink), filter("sinks.kafka.filter", &k.filter)?);
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
                pipeline::sink::otlp::Transport::Grpc => "grpc",
                pipeline::sink::otlp::Transport::HttpProtobuf => "http/protobuf",
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
