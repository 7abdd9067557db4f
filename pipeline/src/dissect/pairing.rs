//! Request/response pairing with caps and timeouts.
//!
//! [`Fifo`] pairs in order (HTTP/1 pipelining, Redis); [`ById`] pairs by an id (DNS ids).
//! Both hold at most `cap` requests in flight per flow; pushing beyond the cap returns the
//! oldest request, which the dissector reports as `no_response` (`pairing.evicted`).

use std::collections::VecDeque;

/// Default number of requests in flight per flow.
pub const DEFAULT_IN_FLIGHT: usize = 256;

/// In-order pairing queue.
#[derive(Debug)]
pub struct Fifo<T> {
    queue: VecDeque<T>,
    cap: usize,
}

impl<T> Fifo<T> {
    pub fn new(cap: usize) -> Self {
        Fifo {
            queue: VecDeque::new(),
            cap: cap.max(1),
        }
    }
    /// Add a request; returns the oldest one if the cap forced it out.
    pub fn push(&mut self, req: T) -> Option<T> {
        let evicted = if self.queue.len() >= self.cap {
            self.queue.pop_front()
        } else {
            None
        };
        self.queue.push_back(req);
        evicted
    }
    pub fn front_mut(&mut self) -> Option<&mut T> {
        self.queue.front_mut()
    }
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.queue.iter_mut()
    }
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.queue.iter()
    }
    /// Take the request at position `i` out of the queue.
    pub fn remove(&mut self, i: usize) -> Option<T> {
        self.queue.remove(i)
    }
    pub fn pop(&mut self) -> Option<T> {
        self.queue.pop_front()
    }
    pub fn len(&self) -> usize {
        self.queue.len()
    }
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.queue.drain(..)
    }
}

/// Pairing by id, oldest first; ids may repeat (a retry), the oldest match wins.
#[derive(Debug)]
pub struct ById<K, T> {
    queue: VecDeque<(K, u64, T)>,
    cap: usize,
    timeout_ns: u64,
}

impl<K: PartialEq, T> ById<K, T> {
    pub fn new(cap: usize, timeout_ns: u64) -> Self {
        ById {
            queue: VecDeque::new(),
            cap: cap.max(1),
            timeout_ns,
        }
    }
    /// Add a request seen at `ts`; returns the oldest one if the cap forced it out.
    pub fn push(&mut self, id: K, ts: u64, req: T) -> Option<T> {
        let evicted = if self.queue.len() >= self.cap {
            self.queue.pop_front().map(|(_, _, r)| r)
        } else {
            None
        };
        self.queue.push_back((id, ts, req));
        evicted
    }
    /// Take the oldest request with this id.
    pub fn take(&mut self, id: &K) -> Option<T> {
        let pos = self.queue.iter().position(|(k, _, _)| k == id)?;
        self.queue.remove(pos).map(|(_, _, r)| r)
    }
    /// Take the oldest request `matches` accepts, whatever its id.
    pub fn take_first(&mut self, matches: impl Fn(&T) -> bool) -> Option<T> {
        let pos = self.queue.iter().position(|(_, _, r)| matches(r))?;
        self.queue.remove(pos).map(|(_, _, r)| r)
    }
    /// Remove requests older than the timeout at `now`, oldest first.
    pub fn expire(&mut self, now: u64) -> Vec<T> {
        let mut out = Vec::new();
        while let Some((_, ts, _)) = self.queue.front() {
            if now.saturating_sub(*ts) < self.timeout_ns {
                break;
            }
            if let Some((_, _, r)) = self.queue.pop_front() {
                out.push(r);
            }
        }
        out
    }
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.queue.drain(..).map(|(_, _, r)| r)
    }
    pub fn len(&self) -> usize {
        self.queue.len()
    }
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
