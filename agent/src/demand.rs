//! Dissection on demand: who is subscribed, and handing them exchanges.
//!
//! Capture workers check [`Hub::active`] (one atomic load) per packet: with no subscription
//! they spool and do nothing else — no decoding, reassembly or dissection — and a worker that
//! sees the last subscription leave drops its pipeline (flow state freed). The first
//! subscription makes every worker start a fresh pipeline.
//!
//! Each subscription has a bounded queue ([`QUEUE_CAP`] events). The capture worker only
//! puts a shared handle on the exchange in each queue: filtering and serialisation happen
//! in [`deliver`], on the API's runtime and its blocking pool, so a slow filter never stalls
//! capture; each exchange is serialised at most once, by the first subscriber that needs it.
//! A full queue drops the event for that subscriber only, counted in its `dropped` (reported
//! to it in its stream) and in the hub's total: a slow consumer never slows capture or other
//! consumers. At most [`Hub::max_subscriptions`] clients subscribe at once; past that,
//! [`Hub::subscribe_from`] refuses.
//!
//! Sinks (OTLP, Prometheus RED metrics, Kafka) are standing subscriptions added once at
//! start ([`Hub::add_sink`]): they count as subscribers, so configuring one keeps dissection
//! running, and each has its own filter and its own bounded queue inside the sink.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use schemas::Exchange;
use sinks::{Published, Sink, json_line};
use tokio::sync::mpsc;

use crate::filter::{Bindings, Filter, TooSlow};
use crate::k8s::Enricher;

/// Events queued per subscription before its new events are dropped.
pub const QUEUE_CAP: usize = 4096;

/// Clients subscribed at once, unless configured otherwise.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 64;

/// One exchange as the subscribers receive it: shared, and serialised at most once, by the
/// first subscriber that needs its line (never on the capture worker).
pub struct Event {
    ex: Arc<Exchange>,
    line: OnceLock<Option<Bytes>>,
}

impl Event {
    pub fn new(ex: Arc<Exchange>) -> Event {
        Event {
            ex,
            line: OnceLock::new(),
        }
    }
    pub fn exchange(&self) -> &Exchange {
        &self.ex
    }
    /// Its JSON line, with the trailing newline.
    pub fn json(&self) -> Option<&Bytes> {
        self.line.get_or_init(|| json_line(&self.ex)).as_ref()
    }
}

struct Sub {
    id: u64,
    tx: mpsc::Sender<Arc<Event>>,
    dropped: Arc<AtomicU64>,
    /// Only exchanges that started at or after this (a `since` replay covers the rest).
    min_start: u64,
}

/// [`Hub::subscribe_from`] refused: the subscription cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} subscriptions are open, the most allowed (api.max_subscriptions)")]
pub struct AtCapacity(pub usize);

/// The subscriptions of one agent.
pub struct Hub {
    subs: Mutex<Vec<Sub>>,
    max_subscriptions: usize,
    sinks: Vec<Arc<dyn Sink>>,
    enricher: Option<Arc<Enricher>>,
    active: AtomicUsize,
    next_id: AtomicU64,
    /// Events delivered to a subscriber's queue.
    pub delivered: AtomicU64,
    /// Events dropped because a subscriber's queue was full.
    pub dropped: AtomicU64,
    /// Exchanges produced by the pipelines.
    pub exchanges: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            subs: Mutex::default(),
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            sinks: Vec::new(),
            enricher: None,
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            exchanges: AtomicU64::new(0),
        }
    }
}

/// A live subscription: its queue, and what it lost. Dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    pub rx: mpsc::Receiver<Arc<Event>>,
    pub dropped: Arc<AtomicU64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

impl Hub {
    /// Subscriptions right now; workers dissect only while this is non-zero.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed) + self.sinks.len()
    }

    /// Subscriptions of API clients (not counting sinks).
    pub fn clients(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Add a standing sink (before the hub is shared). A sink with a filter comes behind
    /// its filter stage (`sink_stage::Filtered`): the hub never evaluates a filter.
    pub fn add_sink(&mut self, sink: Arc<dyn Sink>) {
        self.sinks.push(sink);
    }

    /// Name every exchange's peers in Kubernetes before anyone sees it (before the hub is
    /// shared).
    pub fn set_enricher(&mut self, en: Arc<Enricher>) {
        self.enricher = Some(en);
    }

    /// The Kubernetes enrichment, when on (the spool replay names its exchanges too).
    pub fn enricher(&self) -> Option<&Arc<Enricher>> {
        self.enricher.as_ref()
    }

    /// The sinks, to flush them at shutdown.
    pub fn sinks(&self) -> impl Iterator<Item = &Arc<dyn Sink>> {
        self.sinks.iter()
    }

    /// At most this many clients subscribe at once (before the hub is shared).
    pub fn set_max_subscriptions(&mut self, n: usize) {
        self.max_subscriptions = n;
    }

    /// A new subscription to every exchange (filter it with [`deliver`]).
    #[cfg(test)]
    pub fn subscribe(self: &Arc<Self>) -> Result<Subscription, AtCapacity> {
        self.subscribe_from(0)
    }

    /// A subscription to exchanges that started at or after `min_start` (Unix ns), unless
    /// [`Hub::max_subscriptions`] are open.
    pub fn subscribe_from(self: &Arc<Self>, min_start: u64) -> Result<Subscription, AtCapacity> {
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        if subs.len() >= self.max_subscriptions {
            return Err(AtCapacity(subs.len()));
        }
        let (tx, rx) = mpsc::channel(QUEUE_CAP);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        subs.push(Sub {
            id,
            tx,
            dropped: dropped.clone(),
            min_start,
        });
        self.active.store(subs.len(), Ordering::Relaxed);
        Ok(Subscription {
            hub: self.clone(),
            id,
            rx,
            dropped,
        })
    }

    /// The subscription cap.
    pub fn max_subscriptions(&self) -> usize {
        self.max_subscriptions
    }

    fn unsubscribe(&self, id: u64) {
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| s.id != id);
        self.active.store(subs.len(), Ordering::Relaxed);
    }

    /// End every subscription's stream (shutdown): their queues close once drained.
    pub fn close_all(&self) {
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.clear();
        self.active.store(0, Ordering::Relaxed);
    }

    /// Hand one exchange to every subscriber and sink (serialised at most once, shared by
    /// the sinks that queue it).
    pub fn publish(&self, mut ex: Exchange) {
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        if let Some(en) = &self.enricher {
            en.enrich(&mut ex);
        }
        let mut ev = Published::new(ex);
        for s in &self.sinks {
            s.offer(&mut ev);
        }
        let shared = ev.exchange().clone();
        let ex = &*shared;
        let subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        if subs.is_empty() {
            return;
        }
        let event = Arc::new(Event::new(shared.clone()));
        for s in subs.iter() {
            if ex.start_time_unix_nano < s.min_start {
                continue;
            }
            match s.tx.try_send(event.clone()) {
                Ok(()) => {
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Send `item`, waiting at most `stall` for room: a client that reads nothing for that long
/// is given up on. For blocking threads (replay, export).
pub fn send_within<T>(
    tx: &tokio::sync::mpsc::Sender<T>,
    mut item: T,
    stall: Duration,
) -> Result<(), &'static str> {
    use tokio::sync::mpsc::error::TrySendError;
    let until = std::time::Instant::now() + stall;
    loop {
        match tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => return Err("client gone"),
            Err(TrySendError::Full(back)) => {
                if std::time::Instant::now() >= until {
                    return Err("client not reading");
                }
                item = back;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Events filtered together on the blocking pool.
const BATCH: usize = 256;

/// How a subscription's delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client left (its stream was dropped).
    ClientGone,
    /// The agent is shutting down.
    Closed,
    /// The filter took longer than its budget on one event; the client was told.
    FilterTooSlow,
    /// The client read nothing for the stall time.
    Stalled,
}

/// The notice a client gets before its stream ends because its filter was too slow.
pub fn too_slow_notice(t: TooSlow, budget: Duration) -> Bytes {
    Bytes::from(format!(
        "{{\"notice\":\"filter_too_slow\",\"budget_ms\":{},\"took_ms\":{}}}\n",
        budget.as_millis(),
        t.0.as_millis()
    ))
}

/// Whether a subscriber's filter (if any) takes `ex`, decided within `budget`: the one rule
/// live delivery ([`deliver`]) and `since` replays (the `replay` module) both apply.
pub fn admit(filter: Option<&Filter>, ex: &Exchange, budget: Duration) -> Result<bool, TooSlow> {
    match filter {
        None => Ok(true),
        Some(f) => f.matches_within(&Bindings::of(ex), budget),
    }
}

/// Turn a subscription's events into the lines its client receives: filtered on the
/// blocking pool (off the capture workers and the runtime's threads), each evaluation within
/// `budget`, and serialised. Returns when the client leaves or reads nothing for `stall`, the
/// hub closes, or the filter overruns its budget (then the client gets [`too_slow_notice`]
/// and the subscription ends).
pub async fn deliver(
    mut sub: Subscription,
    filter: Option<Arc<Filter>>,
    budget: Duration,
    stall: Duration,
    out: mpsc::Sender<Bytes>,
) -> Ended {
    loop {
        let first = tokio::select! {
            ev = sub.rx.recv() => match ev {
                Some(ev) => ev,
                None => return Ended::Closed,
            },
            _ = out.closed() => return Ended::ClientGone,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match sub.rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        let (lines, slow) = match &filter {
            None => (
                batch.iter().filter_map(|e| e.json().cloned()).collect(),
                None,
            ),
            Some(f) => {
                let f = f.clone();
                let run = move || {
                    let mut lines = Vec::new();
                    for ev in &batch {
                        match admit(Some(&f), ev.exchange(), budget) {
                            Ok(true) => lines.extend(ev.json().cloned()),
                            Ok(false) => {}
                            Err(slow) => return (lines, Some(slow)),
                        }
                    }
                    (lines, None)
                };
                match tokio::task::spawn_blocking(run).await {
                    Ok(r) => r,
                    Err(_) => return Ended::Closed,
                }
            }
        };
        for line in lines {
            match tokio::time::timeout(stall, out.send(line)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ended::ClientGone,
                Err(_) => return Ended::Stalled,
            }
        }
        if let Some(t) = slow {
            let _ = out.send(too_slow_notice(t, budget)).await;
            return Ended::FilterTooSlow;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex() -> Exchange {
        Exchange::new(
            schemas::Protocol::Http,
            schemas::Transport::Tcp,
            schemas::Peer::new("10.0.0.1", 1),
            schemas::Peer::new("10.0.0.2", 80),
            1,
        )
    }

    #[test]
    fn a_slow_subscriber_loses_only_its_own_events() {
        let hub = Arc::new(Hub::default());
        assert_eq!(hub.active(), 0);
        let mut fast = hub.subscribe().unwrap();
        let slow = hub.subscribe().unwrap();
        assert_eq!(hub.active(), 2);
        for _ in 0..QUEUE_CAP + 10 {
            hub.publish(ex());
            while fast.rx.try_recv().is_ok() {}
        }
        assert_eq!(slow.dropped.load(Ordering::Relaxed), 10);
        assert_eq!(fast.dropped.load(Ordering::Relaxed), 0);
        drop(slow);
        assert_eq!(hub.active(), 1, "leaving unsubscribes");
        drop(fast);
        assert_eq!(hub.active(), 0);
    }

    #[test]
    fn subscriptions_past_the_cap_are_refused() {
        let mut hub = Hub::default();
        hub.set_max_subscriptions(3);
        let hub = Arc::new(hub);
        let subs: Vec<_> = (0..3).map(|_| hub.subscribe().unwrap()).collect();
        assert_eq!(hub.subscribe().err(), Some(AtCapacity(3)));
        drop(subs);
        assert!(hub.subscribe().is_ok(), "room again once they leave");
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_filtered_subscriber_gets_only_what_it_asked_for() {
        let hub = Arc::new(Hub::default());
        let errors = hub.subscribe().unwrap();
        let all = hub.subscribe().unwrap();
        let mut e = ex();
        hub.publish(e.clone());
        e.status = schemas::Status::Error;
        hub.publish(e.clone());
        hub.close_all();
        let f = Arc::new(Filter::compile(r#"status == "error""#).unwrap());
        let budget = Duration::from_secs(5);
        let rt = runtime();
        let lines = |sub, f| {
            let (tx, mut rx) = mpsc::channel(16);
            let ended = rt.block_on(deliver(sub, f, budget, budget, tx));
            assert_eq!(ended, Ended::Closed);
            std::iter::from_fn(|| rx.try_recv().ok()).count()
        };
        assert_eq!((lines(errors, Some(f)), lines(all, None)), (1, 2));
    }

    #[test]
    fn a_filter_over_its_budget_ends_only_its_subscription_with_a_notice() {
        let hub = Arc::new(Hub::default());
        let slow = hub.subscribe().unwrap();
        hub.publish(ex());
        let f = Arc::new(Filter::compile(r#"status == "ok""#).unwrap());
        let (tx, mut rx) = mpsc::channel(16);
        let ended = runtime().block_on(deliver(
            slow,
            Some(f),
            Duration::ZERO,
            Duration::from_secs(5),
            tx,
        ));
        assert_eq!(ended, Ended::FilterTooSlow);
        let notice = rx.try_recv().unwrap();
        assert!(notice.starts_with(b"{\"notice\":\"filter_too_slow\""));
        assert_eq!(hub.active(), 0, "the subscription ended");
    }

    #[test]
    fn a_client_that_left_ends_its_delivery() {
        let hub = Arc::new(Hub::default());
        let sub = hub.subscribe().unwrap();
        let (tx, rx) = mpsc::channel(16);
        drop(rx);
        let ended = runtime().block_on(deliver(
            sub,
            None,
            Duration::from_secs(1),
            Duration::from_secs(1),
            tx,
        ));
        assert_eq!(ended, Ended::ClientGone);
        assert_eq!(hub.active(), 0);
    }

    #[test]
    fn a_client_that_reads_nothing_is_given_up_on() {
        let hub = Arc::new(Hub::default());
        let sub = hub.subscribe().unwrap();
        for _ in 0..10 {
            hub.publish(ex());
        }
        let (tx, _rx) = mpsc::channel(2);
        let ended = runtime().block_on(deliver(
            sub,
            None,
            Duration::from_secs(1),
            Duration::from_millis(50),
            tx,
        ));
        assert_eq!(ended, Ended::Stalled);
        assert_eq!(hub.active(), 0);
    }
}
