//! The agent's HTTP API (the README lists it; ARCHITECTURE.md §2 shows where its events come
//! from), served by axum on its own small tokio runtime: `GET /v1/events` (NDJSON stream of
//! exchanges, or server-sent events when the client accepts `text/event-stream`; the
//! subscription lives as long as the connection), `/v1/status`, `/metrics`, `/healthz`,
//! `/readyz`.
//!
//! A subscriber whose queue overflowed is told in its stream: before its next event comes one
//! line `{"notice":"dropped","dropped_events":N}` with the running total it lost.
//!
//! Limits (`api:` in the configuration, [`ApiLimits`]): open event streams, `since` replays
//! and pcap exports are capped (`429 Too Many Requests` with `Retry-After` past a cap); a
//! filter is compiled and evaluated on the blocking pool, never on a capture worker or the
//! runtime's threads (CEL: the caps of [`crate::filter`] and a time budget per event; BPF:
//! at most [`MAX_BPF_LEN`] bytes, compiled within [`BPF_COMPILE_TIMEOUT`]); a replay or
//! export whose client reads nothing for `client_stall` ends; a `since` or `until` that reaches
//! before the Unix epoch is a `400`, never a wrapped time.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio_stream::Stream;

use crate::capture::Shared;
use crate::config::ApiLimits;
use crate::filter::Filter;

/// Longest BPF filter accepted for an export (libpcap's optimiser is superlinear).
pub const MAX_BPF_LEN: usize = 4096;
/// How long compiling an export's BPF filter may take.
#[cfg_attr(not(feature = "libpcap"), allow(dead_code))]
pub const BPF_COMPILE_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines between a subscription's delivery task and its response body.
const LINES_CAP: usize = 256;

/// What the handlers see.
pub struct ApiState {
    pub shared: Arc<Shared>,
    pub interfaces: Vec<String>,
    pub workers: usize,
    pub spool_dir: String,
    /// When set, every endpoint but `/healthz` and `/readyz` needs
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub limits: ApiLimits,
    /// `since` replays and pcap exports under way.
    pub replays: Arc<AtomicUsize>,
    pub exports: Arc<AtomicUsize>,
}

/// One place under a cap, given back when dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A place if fewer than `max` are taken.
    pub fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `429 Too Many Requests` naming the cap.
fn too_many(what: &str, key: &str, max: usize) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "5")],
        format!("{max} {what} are under way, the most allowed ({key}); retry later\n"),
    )
        .into_response()
}

pub fn router(state: Arc<ApiState>) -> Router {
    let mut guarded = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/events", get(events))
        .route("/v1/pcap", get(pcap));
    let mut open = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    if state.limits.public_metrics {
        open = open.route("/metrics", get(metrics));
    } else {
        guarded = guarded.route("/metrics", get(metrics));
    }
    let guarded = guarded.route_layer(axum::middleware::from_fn_with_state(state.clone(), bearer));
    open.merge(guarded).with_state(state)
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
    /// The delivery task's lines (filtered, serialised).
    lines: tokio::sync::mpsc::Receiver<Bytes>,
    /// The `since` replay, delivered before anything live.
    replay: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    /// Set when the replay gave up on its client (it did not read, or its filter overran
    /// its budget): the stream ends once what the replay sent is delivered.
    abandoned: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    reported: u64,
    /// Server-sent events framing (`data: …` and a blank line) instead of NDJSON.
    sse: bool,
}

impl Events {
    fn frame(&self, line: Bytes) -> Bytes {
        if self.sse {
            crate::output::sse_frame(&line)
        } else {
            line
        }
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
        if self.abandoned.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > self.reported {
            self.reported = dropped;
            let notice = format!("{{\"notice\":\"dropped\",\"dropped_events\":{dropped}}}\n");
            return Poll::Ready(Some(Ok(self.frame(Bytes::from(notice)))));
        }
        match self.lines.poll_recv(cx) {
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

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A duration before now (`5m`, `30s`) as nanoseconds; one that reaches before the Unix
/// epoch is out of range (never wrapped or truncated).
fn ago(name: &str, text: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{name}={text:?}: {e}"))?;
    match u64::try_from(d.as_nanos()) {
        Ok(ns) if ns <= now_ns() => Ok(ns),
        _ => Err(format!(
            "{name}={text:?}: out of range (it reaches before 1970)"
        )),
    }
}

/// Compile a CEL filter on the blocking pool.
async fn compile_filter(text: Option<String>) -> Result<Option<Arc<Filter>>, Response> {
    let Some(text) = text else { return Ok(None) };
    match tokio::task::spawn_blocking(move || Filter::compile(&text)).await {
        Ok(Ok(f)) => Ok(Some(Arc::new(f))),
        Ok(Err(e)) => Err((StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()),
        Err(_) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            "filter compiler failed\n",
        )
            .into_response()),
    }
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
    let since = match q.since.as_deref().map(|s| ago("since", s)) {
        None => None,
        Some(Ok(ns)) => Some(ns),
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let filter = match compile_filter(q.filter).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let limits = &st.limits;
    let replay_slot = match since {
        None => None,
        Some(_) => match Slot::take(&st.replays, limits.max_replays) {
            Some(slot) => Some(slot),
            None => return too_many("since replays", "api.max_replays", limits.max_replays),
        },
    };
    let hub = &st.shared.hub;
    // Live from now (t0) on; with `since`, the spool's exchanges that started before t0 come
    // first.
    let t0 = if since.is_some() { now_ns() } else { 0 };
    let sub = match hub.subscribe_from(t0) {
        Ok(sub) => sub,
        Err(_) => {
            return too_many(
                "event streams",
                "api.max_subscriptions",
                hub.max_subscriptions(),
            );
        }
    };
    st.shared.metrics.subscriptions.set(hub.clients() as i64);
    let dropped = sub.dropped.clone();
    let (tx, lines) = tokio::sync::mpsc::channel(LINES_CAP);
    tokio::spawn(crate::demand::deliver(
        sub,
        filter.clone(),
        limits.filter_budget,
        limits.client_stall,
        tx,
    ));
    let abandoned = Arc::new(AtomicBool::new(false));
    let replay = match (since, replay_slot) {
        (Some(since), Some(slot)) => {
            let (tx, rx) = tokio::sync::mpsc::channel(crate::demand::QUEUE_CAP);
            let dir = std::path::PathBuf::from(&st.spool_dir);
            let enricher = hub.enricher().cloned();
            let (budget, stall) = (limits.filter_budget, limits.client_stall);
            let gave_up = abandoned.clone();
            let shared = st.shared.clone();
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                let opts = crate::replay::Options {
                    filter: filter.as_deref(),
                    enricher: enricher.as_deref(),
                    pipeline: &shared.pipeline,
                    budget,
                    stall,
                };
                use crate::replay::Outcome;
                if let Outcome::Stalled | Outcome::FilterTooSlow =
                    crate::replay::replay(&dir, t0.saturating_sub(since), t0, &opts, &tx)
                {
                    gave_up.store(true, Ordering::Relaxed);
                }
            });
            Some(rx)
        }
        _ => None,
    };
    let kind = if sse {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    let body = Body::from_stream(Events {
        lines,
        replay,
        abandoned,
        dropped,
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
    let now = now_ns();
    let from = match &q.since {
        None => 0,
        Some(s) => now.saturating_sub(ago("since", s)?),
    };
    let to = match &q.until {
        None => u64::MAX,
        Some(s) => now.saturating_sub(ago("until", s)?),
    };
    if to < from {
        return Err(
            "until: the window ends before it starts (until must be less than since)".into(),
        );
    }
    Ok((from, to))
}

/// Writes into the response body in 64 KiB chunks, from a blocking task; a client that
/// reads nothing for `stall` ends the export.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
    stall: Duration,
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
        crate::demand::send_within(&self.tx, Ok(chunk), self.stall)
            .map_err(|why| std::io::Error::new(std::io::ErrorKind::BrokenPipe, why))
    }
}

async fn pcap(State(st): State<Arc<ApiState>>, Query(q): Query<PcapQuery>) -> Response {
    let (from, to) = match window(&q) {
        Ok(w) => w,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    if q.filter.as_ref().is_some_and(|f| f.len() > MAX_BPF_LEN) {
        return (
            StatusCode::BAD_REQUEST,
            format!("filter: over the BPF filter length cap of {MAX_BPF_LEN} bytes\n"),
        )
            .into_response();
    }
    #[cfg(not(feature = "libpcap"))]
    if q.filter.is_some() {
        return (
            StatusCode::BAD_REQUEST,
            "filter: this build has no libpcap\n",
        )
            .into_response();
    }
    let limits = &st.limits;
    let Some(slot) = Slot::take(&st.exports, limits.max_exports) else {
        return too_many("pcap exports", "api.max_exports", limits.max_exports);
    };
    // Compiled on the blocking pool, within a deadline; the slot stays taken until the
    // compiler returns, so slow compilations cannot pile up past the cap.
    #[cfg(feature = "libpcap")]
    let (filter, slot) = match q.filter.clone() {
        None => (None, slot),
        Some(expr) => {
            let job = tokio::task::spawn_blocking(move || {
                (crate::capture::bpf::OfflineFilter::new(&expr), slot)
            });
            match tokio::time::timeout(BPF_COMPILE_TIMEOUT, job).await {
                Ok(Ok((Ok(f), slot))) => (Some(f), slot),
                Ok(Ok((Err(e), _))) => {
                    return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
                }
                Ok(Err(_)) => {
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "filter: compiler failed\n",
                    )
                        .into_response();
                }
                Err(_) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!(
                            "filter: not compiled within {}s\n",
                            BPF_COMPILE_TIMEOUT.as_secs()
                        ),
                    )
                        .into_response();
                }
            }
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let dir = std::path::PathBuf::from(&st.spool_dir);
    let stall = limits.client_stall;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut w = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::new(),
            stall,
        };
        #[cfg(feature = "libpcap")]
        let mut filter = filter;
        #[cfg(feature = "libpcap")]
        let keep = |link: u16, data: &[u8]| filter.as_mut().is_none_or(|f| f.matches(link, data));
        #[cfg(not(feature = "libpcap"))]
        let keep = |_: u16, _: &[u8]| true;
        let r = crate::spool::export::export(&dir, from, to, &mut w, keep).and_then(|_| {
            use std::io::Write as _;
            w.flush()
        });
        if let Err(e) = r {
            let _ = tx.try_send(Err(e));
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
