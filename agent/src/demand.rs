//! Dissection on demand: who is subscribed, and handing them exchanges.
//!
//! Capture workers check [`Hub::active`] (one atomic load) per packet: with no subscription
//! they spool and do nothing else — no decoding, reassembly or dissection — and a worker that
//! sees the last subscription leave drops its pipeline (flow state freed). The first
//! subscription makes every worker start a fresh pipeline.
//!
//! Each subscription has a bounded queue ([`QUEUE_CAP`] events, serialised once per exchange
//! and shared). A full queue drops the event for that subscriber only, counted in its
//! `dropped` (reported to it at the end of its stream) and in the hub's total: a slow consumer
//! never slows capture or other consumers.
//!
//! Sinks (OTLP, Prometheus RED metrics, Kafka) are standing subscriptions added once at
//! start ([`Hub::add_sink`]): they count as subscribers, so configuring one keeps dissection
//! running, and each has its own filter and its own bounded queue inside the sink.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pipeline::sink::{Published, Sink};
use schemas::Exchange;
use tokio::sync::mpsc;

use crate::filter::{Bindings, Filter};
use crate::k8s::Enricher;

/// Events queued per subscription before its new events are dropped.
pub const QUEUE_CAP: usize = 4096;

struct Sub {
    id: u64,
    tx: mpsc::Sender<Bytes>,
    dropped: Arc<AtomicU64>,
    filter: Option<Arc<Filter>>,
    /// Only exchanges that started at or after this (a `since` replay covers the rest).
    min_start: u64,
}

struct Standing {
    sink: Arc<dyn Sink>,
    filter: Option<Filter>,
}

/// The subscriptions of one agent.
#[derive(Default)]
pub struct Hub {
    subs: Mutex<Vec<Sub>>,
    sinks: Vec<Standing>,
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

/// A live subscription: its queue, and what it lost. Dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    pub rx: mpsc::Receiver<Bytes>,
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

    /// Add a standing sink (before the hub is shared).
    pub fn add_sink(&mut self, sink: Arc<dyn Sink>, filter: Option<Filter>) {
        self.sinks.push(Standing { sink, filter });
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
        self.sinks.iter().map(|s| &s.sink)
    }

    /// A new subscription to the exchanges `filter` accepts (all without one).
    pub fn subscribe(self: &Arc<Self>, filter: Option<Filter>) -> Subscription {
        self.subscribe_from(filter, 0)
    }

    /// A subscription to exchanges that started at or after `min_start` (Unix ns).
    pub fn subscribe_from(
        self: &Arc<Self>,
        filter: Option<Filter>,
        min_start: u64,
    ) -> Subscription {
        let (tx, rx) = mpsc::channel(QUEUE_CAP);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.push(Sub {
            id,
            tx,
            dropped: dropped.clone(),
            filter: filter.map(Arc::new),
            min_start,
        });
        self.active.store(subs.len(), Ordering::Relaxed);
        Subscription {
            hub: self.clone(),
            id,
            rx,
            dropped,
        }
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
        // Its own handle on the exchange, so sinks can take `ev` mutably meanwhile.
        let shared = ev.exchange().clone();
        let ex = &*shared;
        // The event's filter variables, built once and only when some filter needs them.
        let mut bindings = None;
        for s in &self.sinks {
            if let Some(f) = &s.filter
                && !f.matches(bindings.get_or_insert_with(|| Bindings::of(ex)))
            {
                continue;
            }
            s.sink.offer(&mut ev);
        }
        let subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        for s in subs.iter() {
            if ex.start_time_unix_nano < s.min_start {
                continue;
            }
            if let Some(f) = &s.filter
                && !f.matches(bindings.get_or_insert_with(|| Bindings::of(ex)))
            {
                continue;
            }
            let Some(line) = ev.json() else { return };
            match s.tx.try_send(line.clone()) {
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
        let mut fast = hub.subscribe(None);
        let slow = hub.subscribe(None);
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
    fn a_filtered_subscriber_gets_only_what_it_asked_for() {
        let hub = Arc::new(Hub::default());
        let mut errors = hub.subscribe(Some(Filter::compile(r#"status == "error""#).unwrap()));
        let mut all = hub.subscribe(None);
        let mut e = ex();
        hub.publish(e.clone());
        e.status = schemas::Status::Error;
        hub.publish(e.clone());
        let got = |s: &mut Subscription| std::iter::from_fn(|| s.rx.try_recv().ok()).count();
        assert_eq!((got(&mut errors), got(&mut all)), (1, 2));
    }
}
