//! Request/response pairing with caps and timeouts.
//!
//! [`Fifo`] pairs in order (HTTP/1 pipelining, Redis); [`ById`] pairs by an id (DNS ids).
//! Both hold at most `cap` requests in flight per flow; pushing beyond the cap returns the
//! oldest request, which the dissector reports as `no_response` (`pairing.evicted`).
//!
//! A queue's first slot is reserved alone: most connections have one request in flight at a
//! time, and a `VecDeque` would otherwise make room for four (for HTTP/1, 3 × 304 bytes per
//! open flow held for nothing). It grows as usual from there. `held_bytes` counts the slots
//! (capacity, not length) for the memory budget.

use std::collections::VecDeque;

/// Default number of requests in flight per flow.
pub const DEFAULT_IN_FLIGHT: usize = 256;

/// Room for exactly one element in an unallocated queue (growth doubles from there).
fn first_slot_alone<T>(q: &mut VecDeque<T>) {
    if q.capacity() == 0 {
        q.reserve_exact(1);
    }
}

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
        first_slot_alone(&mut self.queue);
        self.queue.push_back(req);
        evicted
    }
    /// The queue's slots plus what `each` says every request owns beyond its slot.
    pub fn held_bytes(&self, each: impl Fn(&T) -> usize) -> usize {
        self.queue.capacity() * std::mem::size_of::<T>()
            + self.queue.iter().map(each).sum::<usize>()
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
        first_slot_alone(&mut self.queue);
        self.queue.push_back((id, ts, req));
        evicted
    }
    /// The queue's slots plus what `each` says every request owns beyond its slot.
    pub fn held_bytes(&self, each: impl Fn(&T) -> usize) -> usize {
        self.queue.capacity() * std::mem::size_of::<(K, u64, T)>()
            + self.queue.iter().map(|(_, _, r)| each(r)).sum::<usize>()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_in_flight_holds_one_slot_and_more_grow_as_needed() {
        let mut q = Fifo::new(8);
        assert_eq!(q.held_bytes(|_| 0), 0);
        q.push([1u8; 100]);
        assert_eq!(q.held_bytes(|_| 0), 100);
        assert_eq!(q.held_bytes(|_| 7), 107);
        q.pop();
        q.push([2u8; 100]);
        assert_eq!(q.held_bytes(|_| 0), 100, "a slot freed is reused");
        q.push([3u8; 100]);
        q.push([4u8; 100]);
        assert!(
            q.held_bytes(|_| 0) >= 300,
            "capacity, not length, is counted"
        );
        assert_eq!(q.pop().map(|r| r[0]), Some(2), "order kept across growth");

        let mut ids = ById::new(8, 1_000);
        ids.push(7u16, 0, [5u8; 64]);
        let slot = std::mem::size_of::<(u16, u64, [u8; 64])>();
        assert_eq!(ids.held_bytes(|_| 1), slot + 1);
        ids.push(8, 1, [6u8; 64]);
        assert!(ids.held_bytes(|_| 0) >= 2 * slot);
        assert_eq!(ids.take(&8).map(|r| r[0]), Some(6));
    }

    #[test]
    fn the_cap_evicts_the_oldest() {
        let mut q = Fifo::new(2);
        assert_eq!(q.push(1), None);
        assert_eq!(q.push(2), None);
        assert_eq!(q.push(3), Some(1));
        assert_eq!(q.len(), 2);
    }
}
