//! The agent's HTTP API (architecture.md §6), served by axum on its own small tokio runtime:
//! `GET /v1/events` (NDJSON stream of exchanges, or server-sent events when the client
//! accepts `text/event-stream`; the subscription lives as long as the connection), `/v1/status`, `/metrics`, `/healthz`, `/readyz`.
//!
//! A subscriber whose queue overflowed is told in its stream: before its next event comes one
//! line `{"notice":"dropped","dropped_events":N}` with the running total it lost.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio_stream::Stream;

use crate::capture::Shared;
use crate::demand::Subscription;
use crate::filter::Filter;

/// What the handlers see.
pub struct ApiState {
    pub shared: Arc<Shared>,
    pub interfaces: Vec<String>,
    pub workers: usize,
    pub spool_dir: String,
    /// When set, every endpoint but `/healthz` and `/readyz` needs
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

pub fn router(state: Arc<ApiState>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/events", get(events))
        .route("/v1/pcap", get(pcap))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), bearer));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .with_state(state)
}

/// The header that carries the token where `Authorization` cannot.
pub const TOKEN_HEADER: &str = "x-tapwire-token";

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn bearer(
    State(st): State<Arc<ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = &st.token else {
        return next.run(req).await;
    };
    // `X-Tapwire-Token` too: the Kubernetes API server's pod proxy (`watch --cluster`) takes
    // the `Authorization` header for itself and does not forward it.
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| {
            req.headers()
                .get(TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
        });
    match given {
        Some(g) if same(g.trim().as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid bearer token is required\n",
        )
            .into_response(),
    }
}

async fn readyz(State(st): State<Arc<ApiState>>) -> Response {
    if st.shared.stop.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

fn refresh_gauges(st: &ApiState) {
    let m = &st.shared.metrics;
    m.subscriptions.set(st.shared.hub.clients() as i64);
    for sink in st.shared.hub.sinks() {
        m.sinks
            .queued
            .with_label_values(&[sink.name()])
            .set(sink.queued() as i64);
    }
    catch_up(
        &m.route_overflow,
        st.shared.routes.overflowed.load(Ordering::Relaxed),
    );
    catch_up(
        &m.subscriber_drops,
        st.shared.hub.dropped.load(Ordering::Relaxed),
    );
}

/// Bring a counter that mirrors an atomic total up to that total.
fn catch_up(counter: &prometheus::IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

async fn metrics(State(st): State<Arc<ApiState>>) -> Response {
    refresh_gauges(&st);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.shared.metrics.render(),
    )
        .into_response()
}

async fn status(State(st): State<Arc<ApiState>>) -> Response {
    refresh_gauges(&st);
    let m = &st.shared.metrics;
    let sum = |v: &prometheus::IntCounterVec| -> u64 {
        st.interfaces
            .iter()
            .map(|i| v.get_metric_with_label_values(&[i]).map_or(0, |c| c.get()))
            .sum()
    };
    let gauge_sum = |v: &prometheus::IntGaugeVec| -> i64 {
        (0..st.workers)
            .map(|w| {
                v.get_metric_with_label_values(&[&w.to_string()])
                    .map_or(0, |g| g.get())
            })
            .sum()
    };
    let hub = &st.shared.hub;
    let body = serde_json::json!({
        "capture": {
            "interfaces": st.interfaces,
            "workers": st.workers,
            "packets": sum(&m.packets),
            "bytes": sum(&m.bytes),
            "kernel_drops": sum(&m.kernel_drops),
        },
        "spool": {
            "dir": st.spool_dir,
            "bytes": gauge_sum(&m.spool_bytes),
            "segments": gauge_sum(&m.spool_segments),
        },
        "demand": {
            "subscriptions": hub.clients(),
            "sinks": hub.sinks().map(|s| s.name()).collect::<Vec<_>>(),
            "dissection_active": m.dissection_active.get() == 1,
            "dissected_packets": m.dissected_packets.get(),
            "exchanges": hub.exchanges.load(Ordering::Relaxed),
            "delivered": hub.delivered.load(Ordering::Relaxed),
            "dropped": hub.dropped.load(Ordering::Relaxed),
        },
        "kubernetes": hub.enricher().map_or(serde_json::json!({"enabled": false}), |en| {
            serde_json::json!({"enabled": true, "api_server": en.server(), "pods_listed": en.ready()})
        }),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A subscription as a response body stream.
struct Events {
    sub: Subscription,
    /// The `since` replay, delivered before anything live.
    replay: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    reported: u64,
    /// Server-sent events framing (`data: …` and a blank line) instead of NDJSON.
    sse: bool,
}

impl Events {
    fn frame(&self, line: Bytes) -> Bytes {
        if !self.sse {
            return line;
        }
        let mut v = Vec::with_capacity(line.len() + 8);
        v.extend_from_slice(b"data: ");
        v.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(&line));
        v.extend_from_slice(b"\n\n");
        Bytes::from(v)
    }
}

impl Stream for Events {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(r) = self.replay.as_mut() {
            match r.poll_recv(cx) {
                Poll::Ready(Some(line)) => return Poll::Ready(Some(Ok(self.frame(line)))),
                Poll::Ready(None) => self.replay = None,
                Poll::Pending => return Poll::Pending,
            }
        }
        let dropped = self.sub.dropped.load(Ordering::Relaxed);
        if dropped > self.reported {
            self.reported = dropped;
            let notice = format!("{{\"notice\":\"dropped\",\"dropped_events\":{dropped}}}\n");
            return Poll::Ready(Some(Ok(self.frame(Bytes::from(notice)))));
        }
        match self.sub.rx.poll_recv(cx) {
            Poll::Ready(Some(line)) => Poll::Ready(Some(Ok(self.frame(line)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[derive(serde::Deserialize)]
struct EventsQuery {
    filter: Option<String>,
    since: Option<String>,
}

async fn events(
    State(st): State<Arc<ApiState>>,
    headers: axum::http::HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let filter = match q.filter.as_deref().map(Filter::compile) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let since = match q.since.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) => Some(d.as_nanos() as u64),
        Some(Err(e)) => {
            let s = q.since.unwrap_or_default();
            return (StatusCode::BAD_REQUEST, format!("since={s:?}: {e}\n")).into_response();
        }
    };
    let hub = &st.shared.hub;
    let replay = match since {
        None => {
            let sub = hub.subscribe(filter);
            st.shared.metrics.subscriptions.set(hub.clients() as i64);
            return events_body(sub, None, sse);
        }
        Some(since) => since,
    };
    // Live from now (t0) on; the spool's exchanges that started before t0 come first.
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let replay_filter = q.filter.as_deref().and_then(|f| Filter::compile(f).ok());
    let sub = hub.subscribe_from(filter, t0);
    st.shared.metrics.subscriptions.set(hub.clients() as i64);
    let (tx, rx) = tokio::sync::mpsc::channel(crate::demand::QUEUE_CAP);
    let dir = std::path::PathBuf::from(&st.spool_dir);
    let enricher = hub.enricher().cloned();
    tokio::task::spawn_blocking(move || {
        crate::replay::replay(
            &dir,
            t0.saturating_sub(replay),
            t0,
            replay_filter.as_ref(),
            enricher.as_deref(),
            &tx,
        );
    });
    events_body(sub, Some(rx), sse)
}

fn events_body(
    sub: Subscription,
    replay: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    sse: bool,
) -> Response {
    let kind = if sse {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    let body = Body::from_stream(Events {
        sub,
        replay,
        reported: 0,
        sse,
    });
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct PcapQuery {
    since: Option<String>,
    until: Option<String>,
    /// Capture filter (tcpdump syntax) applied to the exported packets.
    filter: Option<String>,
}

/// `since` / `until` as durations before now (`5m`, `30s`, `1h`): the window in Unix ns.
fn window(q: &PcapQuery) -> Result<(u64, u64), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let ago = |name: &str, v: &Option<String>, default: u64| -> Result<u64, String> {
        match v {
            None => Ok(default),
            Some(s) => humantime::parse_duration(s)
                .map(|d| now.saturating_sub(d.as_nanos() as u64))
                .map_err(|e| format!("{name}={s:?}: {e}")),
        }
    };
    let from = ago("since", &q.since, 0)?;
    let to = ago("until", &q.until, u64::MAX)?;
    Ok((from, to))
}

/// Writes into the response body in 64 KiB chunks, from a blocking task.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 16 {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

async fn pcap(State(st): State<Arc<ApiState>>, Query(q): Query<PcapQuery>) -> Response {
    let (from, to) = match window(&q) {
        Ok(w) => w,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    #[cfg(feature = "libpcap")]
    let mut filter = match q
        .filter
        .as_deref()
        .map(crate::capture::bpf::OfflineFilter::new)
    {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    #[cfg(not(feature = "libpcap"))]
    if q.filter.is_some() {
        return (
            StatusCode::BAD_REQUEST,
            "filter: this build has no libpcap\n",
        )
            .into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let dir = std::path::PathBuf::from(&st.spool_dir);
    tokio::task::spawn_blocking(move || {
        let mut w = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        #[cfg(feature = "libpcap")]
        let keep = |link: u16, data: &[u8]| filter.as_mut().is_none_or(|f| f.matches(link, data));
        #[cfg(not(feature = "libpcap"))]
        let keep = |_: u16, _: &[u8]| true;
        let r = crate::spool::export::export(&dir, from, to, &mut w, keep).and_then(|_| {
            use std::io::Write as _;
            w.flush()
        });
        if let Err(e) = r {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    (
        [
            (header::CONTENT_TYPE, "application/x-pcapng"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"tapwire.pcapng\"",
            ),
        ],
        body,
    )
        .into_response()
}
