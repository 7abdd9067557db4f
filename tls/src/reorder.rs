//! Chunks back in time order before the feed.
//!
//! The ring buffer holds chunks in the order their calls returned, which is not always the
//! order the bytes moved: Go's HTTP client writes a request on one goroutine and reads the
//! answer on another, and if the writer's thread is preempted between its system call and
//! its return, the answer's chunk is reported first; dissected in that order, the exchange
//! would lose its response. The BPF program stamps a write when it was called and a read when
//! it returned, so in time order a request precedes its answer. This stage holds each chunk
//! [`WINDOW_NS`] (of the monotonic clock) and releases them sorted by that stamp.
//!
//! Limits: at most [`MAX_CHUNKS`] chunks and [`MAX_BYTES`] bytes held; past either, the
//! oldest are released early (counted in [`Reorder::early`]). A write reported more than the
//! window after its answer is still out of order (the dissector then sees what a packet
//! capture with reordering shows).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::chunk::Chunk;

/// How long a chunk waits for earlier ones reported late.
pub const WINDOW_NS: u64 = 50_000_000;
/// Most chunks held.
pub const MAX_CHUNKS: usize = 65536;
/// Most plaintext bytes held.
pub const MAX_BYTES: usize = 16 << 20;

/// A held chunk, ordered by its stamp, then by arrival.
struct Held {
    ts: u64,
    seq: u64,
    chunk: Chunk,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.ts, self.seq) == (other.ts, other.seq)
    }
}

impl Eq for Held {}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ts, self.seq).cmp(&(other.ts, other.seq))
    }
}

/// The reordering stage.
#[derive(Default)]
pub struct Reorder {
    heap: BinaryHeap<Reverse<Held>>,
    bytes: usize,
    seq: u64,
    /// Chunks released before their window ended, because a cap was reached.
    pub early: u64,
}

impl Reorder {
    pub fn new() -> Reorder {
        Reorder::default()
    }

    /// Chunks held now.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Hold `chunk`; when a cap is reached the oldest held go to `f` at once.
    pub fn push(&mut self, chunk: Chunk, mut f: impl FnMut(Chunk)) {
        self.bytes += chunk.data.len();
        self.seq += 1;
        self.heap.push(Reverse(Held {
            ts: chunk.ts_mono_ns,
            seq: self.seq,
            chunk,
        }));
        while self.heap.len() > MAX_CHUNKS || self.bytes > MAX_BYTES {
            self.early += 1;
            self.pop(&mut f);
        }
    }

    /// Hand `f` every chunk stamped at least [`WINDOW_NS`] before `now_mono_ns`, in order.
    pub fn release(&mut self, now_mono_ns: u64, mut f: impl FnMut(Chunk)) {
        while self
            .heap
            .peek()
            .is_some_and(|Reverse(h)| h.ts.saturating_add(WINDOW_NS) <= now_mono_ns)
        {
            self.pop(&mut f);
        }
    }

    /// Hand `f` everything held, in order.
    pub fn finish(&mut self, mut f: impl FnMut(Chunk)) {
        while !self.heap.is_empty() {
            self.pop(&mut f);
        }
    }

    fn pop(&mut self, f: &mut impl FnMut(Chunk)) {
        if let Some(Reverse(h)) = self.heap.pop() {
            self.bytes -= h.chunk.data.len();
            f(h.chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{ConnId, Direction};

    fn chunk(ts: u64, data: &[u8]) -> Chunk {
        Chunk {
            ts_mono_ns: ts,
            conn: ConnId {
                pid: 1,
                ssl: 1,
                generation: 0,
            },
            tid: 1,
            direction: Direction::Read,
            offset: 0,
            new_connection: false,
            endpoints: None,
            comm: String::new(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn an_answer_reported_first_is_released_after_its_request() {
        let mut r = Reorder::new();
        let mut out = Vec::new();
        // The answer's read returned at 2 ms; the request's write, called at 1 ms, is
        // reported after it.
        r.push(chunk(2_000_000, b"answer"), |c| out.push(c));
        r.push(chunk(1_000_000, b"request"), |c| out.push(c));
        r.release(40_000_000, |c| out.push(c));
        assert!(out.is_empty(), "both still within the window");
        r.release(60_000_000, |c| out.push(c));
        let got: Vec<&[u8]> = out.iter().map(|c| c.data.as_slice()).collect();
        assert_eq!(got, [&b"request"[..], b"answer"]);
        assert!(r.is_empty());
        // Equal stamps keep their arrival order.
        r.push(chunk(5, b"a"), |c| out.push(c));
        r.push(chunk(5, b"b"), |c| out.push(c));
        out.clear();
        r.finish(|c| out.push(c));
        let got: Vec<&[u8]> = out.iter().map(|c| c.data.as_slice()).collect();
        assert_eq!(got, [&b"a"[..], b"b"]);
    }

    #[test]
    fn the_caps_release_the_oldest_early() {
        let mut r = Reorder::new();
        let mut out = Vec::new();
        let big = vec![0u8; MAX_BYTES / 4 + 1];
        for ts in 0..4 {
            r.push(chunk(ts, &big), |c| out.push(c));
        }
        assert_eq!((out.len(), r.early), (1, 1));
        assert_eq!(out[0].ts_mono_ns, 0);
        assert_eq!(r.len(), 3);
    }
}
