//! Helpers for configuration values, shared by every sink's `File` (the keys under `sinks:`
//! in the agent's YAML) and by the agent's own configuration: durations, `k=v` lists and
//! environment variables. Errors are one line naming the key.

use std::time::Duration;

/// A duration in `humantime` form (`5s`, `250ms`, `1m`).
pub fn duration(key: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{key}: {text:?}: {e}"))
}

/// `k=v,k2=v2` with percent-encoded values (`OTEL_EXPORTER_OTLP_HEADERS`,
/// `OTEL_RESOURCE_ATTRIBUTES`, `TAPWIRE_KAFKA_PROPERTIES`).
pub fn key_values(var: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{var}: {item:?} is not key=value"))?;
        let v: String = form_urlencoded::parse(format!("v={}", v.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// An environment variable, when set and not empty.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_are_percent_decoded() {
        assert_eq!(
            key_values("V", "api-key=a%20b, x = y ,tok=p+q%2Cr").unwrap(),
            vec![
                ("api-key".to_string(), "a b".to_string()),
                ("x".to_string(), "y".to_string()),
                ("tok".to_string(), "p+q,r".to_string())
            ]
        );
        assert!(key_values("V", "novalue").unwrap_err().starts_with("V:"));
    }

    #[test]
    fn each_sink_names_the_key_it_cannot_use() {
        use crate::kafka::KafkaFile;
        use crate::otlp::OtlpFile;
        use crate::red::PromFile;
        // Not configured: no sink, no error (the variables are unset in tests).
        assert!(KafkaFile::default().resolve().unwrap().is_none());
        assert!(PromFile::default().resolve().unwrap().is_none());
        let topic_only = KafkaFile {
            topic: Some("t".into()),
            ..KafkaFile::default()
        };
        assert_eq!(
            topic_only.resolve().unwrap_err(),
            "sinks.kafka.brokers: missing"
        );
        let nested = KafkaFile {
            brokers: Some("b:9092".into()),
            properties: [("acks".to_string(), serde_json::json!({"x": 1}))].into(),
            ..KafkaFile::default()
        };
        assert!(
            nested
                .resolve()
                .unwrap_err()
                .starts_with("sinks.kafka.properties.acks:")
        );
        let zip = OtlpFile {
            endpoint: Some("http://c:4317".into()),
            compression: Some("zip".into()),
            ..OtlpFile::default()
        };
        assert!(
            zip.resolve()
                .unwrap_err()
                .starts_with("sinks.otlp.compression:")
        );
        let series = PromFile {
            enabled: Some(true),
            max_series: Some(0),
            ..PromFile::default()
        };
        assert!(
            series
                .resolve()
                .unwrap_err()
                .starts_with("sinks.prometheus.max_series:")
        );
    }
}
