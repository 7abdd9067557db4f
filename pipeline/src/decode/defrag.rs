//! IPv4 and IPv6 fragment reassembly with memory, count and age caps.
//!
//! The per-datagram hole tracking is etherparse's `IpDefragBuf`; its pool (`IpDefragPool`) has
//! no memory bound, so the table, the caps and the eviction are ours:
//! - `max_bytes` (default 4 MiB): fragment payload bytes held across all datagrams;
//! - `max_datagrams` (default 1024): datagrams being reassembled at once;
//! - `timeout_ns` (default 30 s of capture time): a datagram whose first fragment is older is
//!   dropped.
//!
//! Reaching a cap evicts the oldest datagram (counted in `evicted`); a fragment that
//! conflicts with what is held (bad length, overlapping end) drops its datagram (`errors`).
//! A datagram is at most 65535 bytes by construction (IP length fields).

use std::collections::HashMap;
use std::net::IpAddr;

use etherparse::defrag::IpDefragBuf;
use etherparse::{IpFragOffset, IpNumber};

/// Default cap on fragment bytes held.
pub const DEFAULT_MAX_BYTES: usize = 4 << 20;
/// Default cap on datagrams in reassembly.
pub const DEFAULT_MAX_DATAGRAMS: usize = 1024;
/// Default age after which an incomplete datagram is dropped.
pub const DEFAULT_TIMEOUT_NS: u64 = 30_000_000_000;

/// What identifies one fragmented datagram, plus this fragment's place in it.
#[derive(Debug, Clone, Copy)]
pub struct FragInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub proto: u8,
    pub offset: IpFragOffset,
    pub more: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

#[derive(Debug)]
struct Entry {
    buf: IpDefragBuf,
    first_ts: u64,
    bytes: usize,
}

/// Result of adding one fragment.
#[derive(Debug)]
pub enum FragOutcome {
    /// Held; the datagram is not complete yet.
    Pending,
    /// The fragment (and its datagram) was dropped: cap, error or conflict.
    Dropped,
    /// The datagram is complete: its whole IP payload.
    Complete(Vec<u8>),
}

/// Counters of fragment reassembly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefragStats {
    /// Datagrams dropped to stay under `max_bytes` / `max_datagrams`.
    pub evicted: u64,
    /// Datagrams dropped because they were not complete within `timeout_ns`.
    pub timed_out: u64,
    /// Fragments rejected as inconsistent (their datagram is dropped).
    pub errors: u64,
}

impl DefragStats {
    /// Add another table's counters.
    pub fn add(&mut self, o: &DefragStats) {
        let DefragStats {
            evicted,
            timed_out,
            errors,
        } = o;
        self.evicted += evicted;
        self.timed_out += timed_out;
        self.errors += errors;
    }
}

/// Fragment reassembly table.
#[derive(Debug)]
pub struct Defragmenter {
    pub max_bytes: usize,
    pub max_datagrams: usize,
    pub timeout_ns: u64,
    pub stats: DefragStats,
    table: HashMap<Key, Entry>,
    held_bytes: usize,
    spare: Vec<Vec<u8>>,
    last_sweep: u64,
}

impl Default for Defragmenter {
    fn default() -> Self {
        Defragmenter::new(DEFAULT_MAX_BYTES, DEFAULT_MAX_DATAGRAMS, DEFAULT_TIMEOUT_NS)
    }
}

impl Defragmenter {
    pub fn new(max_bytes: usize, max_datagrams: usize, timeout_ns: u64) -> Self {
        Defragmenter {
            max_bytes,
            max_datagrams: max_datagrams.max(1),
            timeout_ns,
            stats: DefragStats::default(),
            table: HashMap::new(),
            held_bytes: 0,
            spare: Vec::new(),
            last_sweep: 0,
        }
    }

    /// Fragment payload bytes currently held.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Datagrams currently in reassembly.
    pub fn datagrams(&self) -> usize {
        self.table.len()
    }

    /// Add one fragment's payload.
    pub fn add(&mut self, ts: u64, info: FragInfo, payload: &[u8]) -> FragOutcome {
        if ts.saturating_sub(self.last_sweep) >= 1_000_000_000 {
            self.sweep(ts);
        }
        if payload.len() > self.max_bytes {
            self.stats.evicted += 1;
            return FragOutcome::Dropped;
        }
        let key = Key {
            src: info.src,
            dst: info.dst,
            id: info.id,
            proto: info.proto,
        };
        if !self.table.contains_key(&key) {
            while self.table.len() >= self.max_datagrams {
                self.evict_oldest();
            }
            let data = self.spare.pop().unwrap_or_default();
            let entry = Entry {
                buf: IpDefragBuf::new(IpNumber(info.proto), data, Vec::new()),
                first_ts: ts,
                bytes: 0,
            };
            self.table.insert(key, entry);
        }
        while self.held_bytes + payload.len() > self.max_bytes {
            // Evict others first; the datagram being added goes last.
            if !self.evict_oldest_except(&key) {
                break;
            }
        }
        let Some(entry) = self.table.get_mut(&key) else {
            return FragOutcome::Dropped;
        };
        if entry.buf.add(info.offset, info.more, payload).is_err() {
            self.stats.errors += 1;
            self.remove(&key);
            return FragOutcome::Dropped;
        }
        entry.bytes += payload.len();
        self.held_bytes += payload.len();
        if entry.buf.is_complete() {
            match self.table.remove(&key) {
                Some(e) => {
                    self.held_bytes -= e.bytes;
                    let (data, _) = e.buf.take_bufs();
                    FragOutcome::Complete(data)
                }
                None => FragOutcome::Dropped,
            }
        } else {
            FragOutcome::Pending
        }
    }

    /// Give a completed datagram's buffer back for reuse.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < 16 {
            buf.clear();
            self.spare.push(buf);
        }
    }

    /// Drop every incomplete datagram (end of input); they count as timed out.
    pub fn clear(&mut self) {
        self.stats.timed_out += self.table.len() as u64;
        self.table.clear();
        self.held_bytes = 0;
    }

    /// Drop datagrams older than the timeout.
    pub fn sweep(&mut self, now: u64) {
        self.last_sweep = now;
        let timeout = self.timeout_ns;
        let before = self.table.len();
        let mut freed = 0;
        self.table.retain(|_, e| {
            let keep = now.saturating_sub(e.first_ts) < timeout;
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        self.held_bytes -= freed;
        self.stats.timed_out += (before - self.table.len()) as u64;
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.table.remove(key) {
            self.held_bytes -= e.bytes;
            let (data, _) = e.buf.take_bufs();
            self.recycle(data);
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(k) = self
            .table
            .iter()
            .min_by_key(|(_, e)| e.first_ts)
            .map(|(k, _)| *k)
        {
            self.remove(&k);
            self.stats.evicted += 1;
        }
    }

    fn evict_oldest_except(&mut self, keep: &Key) -> bool {
        let victim = self
            .table
            .iter()
            .filter(|(k, _)| *k != keep)
            .min_by_key(|(_, e)| e.first_ts)
            .map(|(k, _)| *k);
        match victim {
            Some(k) => {
                self.remove(&k);
                self.stats.evicted += 1;
                true
            }
            None => false,
        }
    }
}
