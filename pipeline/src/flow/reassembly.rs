//! TCP stream reassembly for one direction of a connection.
//!
//! Hand-written: no crate reassembles a *passively observed* stream (smoltcp's assembler is
//! for an endpoint's own receive window and inspired the hole cap). Sequence numbers are
//! unwrapped to 64-bit stream offsets relative to the first byte seen, so streams longer than
//! 4 GiB and wrap-around are handled.
//!
//! Behaviour:
//! - in-order data is delivered at once, without copying;
//! - retransmissions (data at or below the delivered offset) are dropped, counted; a segment
//!   that overlaps the delivered edge is trimmed (the first copy of a byte wins);
//! - out-of-order segments are copied into a per-direction buffer capped by `max_ooo_bytes`
//!   (per flow) and by the shared [`Budget`] (all flows); when a cap is hit the stream skips
//!   ahead to the first buffered segment and reports the hole as a gap (`ooo_overflow`);
//! - a hole the peer has already acknowledged (the bytes were lost by the capture, not by the
//!   network) is reported as a gap as soon as that ACK is seen;
//! - bytes cut by the snaplen (`missing`) are a gap right after the bytes present;
//! - `flush` at connection end delivers what is buffered, with gaps for the holes.

use std::collections::BTreeMap;

/// A piece of the reassembled stream handed to the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes of the stream were lost.
    Gap(u64),
}

/// Out-of-order bytes buffered across all flows, against a global cap.
#[derive(Debug, Clone)]
pub struct Budget {
    pub used: usize,
    pub max: usize,
}

/// Counters of reassembly (summed over directions and flows by the flow table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub retransmitted_segments: u64,
    pub overlapping_segments: u64,
    pub out_of_order_segments: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Times a per-flow or global out-of-order cap forced a skip.
    pub ooo_overflow: u64,
}

impl ReassemblyStats {
    /// Add another reassembler's counters.
    pub fn add(&mut self, o: &ReassemblyStats) {
        let ReassemblyStats {
            retransmitted_segments,
            overlapping_segments,
            out_of_order_segments,
            gaps,
            gap_bytes,
            ooo_overflow,
        } = o;
        self.retransmitted_segments += retransmitted_segments;
        self.overlapping_segments += overlapping_segments;
        self.out_of_order_segments += out_of_order_segments;
        self.gaps += gaps;
        self.gap_bytes += gap_bytes;
        self.ooo_overflow += ooo_overflow;
    }
}

/// A buffered out-of-order segment: its bytes and how many bytes after them the capture cut.
#[derive(Debug)]
struct Held {
    data: Vec<u8>,
    missing: u32,
}

/// Reassembly state of one direction.
#[derive(Debug)]
pub struct Reassembler {
    /// Sequence number of stream offset 0; `None` until the first segment or SYN.
    base: Option<u32>,
    /// Next offset to deliver.
    next: u64,
    /// Buffered out-of-order segments by offset.
    ooo: BTreeMap<u64, Held>,
    ooo_bytes: usize,
    max_ooo_bytes: usize,
    /// Offset of the FIN, once seen.
    fin_at: Option<u64>,
}

impl Reassembler {
    pub fn new(max_ooo_bytes: usize) -> Self {
        Reassembler {
            base: None,
            next: 0,
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            max_ooo_bytes,
            fin_at: None,
        }
    }

    /// Offset of the next byte to deliver (bytes delivered plus gaps so far).
    pub fn delivered(&self) -> u64 {
        self.next
    }

    /// Bytes buffered out of order.
    pub fn buffered(&self) -> usize {
        self.ooo_bytes
    }

    /// True once a FIN was seen and every byte before it was delivered.
    pub fn finished(&self) -> bool {
        self.fin_at.is_some_and(|f| self.next >= f)
    }

    /// A SYN with this sequence number: the stream starts right after it.
    pub fn syn(&mut self, seq: u32) {
        if self.base.is_none() {
            self.base = Some(seq.wrapping_add(1));
        }
    }

    /// Stream offset of a sequence number, unwrapped near the delivery edge; negative when
    /// the sequence number lies before the stream's start.
    fn offset(&self, base: u32, seq: u32) -> i64 {
        let rel = seq.wrapping_sub(base);
        let diff = rel.wrapping_sub(self.next as u32) as i32;
        self.next as i64 + i64::from(diff)
    }

    /// One segment of this direction. `fin` marks a FIN after the payload.
    #[allow(clippy::too_many_arguments)]
    pub fn segment<F: FnMut(Chunk<'_>)>(
        &mut self,
        seq: u32,
        payload: &[u8],
        missing: u32,
        fin: bool,
        budget: &mut Budget,
        stats: &mut ReassemblyStats,
        out: &mut F,
    ) {
        let base = *self.base.get_or_insert(seq);
        let off = self.offset(base, seq);
        let total = payload.len() as u64 + u64::from(missing);
        if fin && self.fin_at.is_none() && off >= 0 {
            self.fin_at = Some(off as u64 + total);
        }
        if total == 0 {
            return;
        }
        let end = off + total as i64;
        if end <= self.next as i64 {
            stats.retransmitted_segments += 1;
            return;
        }
        if off < self.next as i64 {
            // Overlaps the delivered edge: keep only the new tail.
            stats.overlapping_segments += 1;
            let skip = (self.next as i64 - off) as u64;
            let (payload, missing) = trim_front(payload, missing, skip);
            self.deliver_in_order(payload, missing, budget, stats, out);
            return;
        }
        if off as u64 == self.next {
            self.deliver_in_order(payload, missing, budget, stats, out);
            return;
        }
        // Ahead of the delivery edge: buffer it.
        stats.out_of_order_segments += 1;
        let off = off as u64;
        if self
            .ooo
            .get(&off)
            .is_some_and(|h| h.data.len() >= payload.len())
        {
            stats.retransmitted_segments += 1;
            return;
        }
        if self.ooo_bytes + payload.len() > self.max_ooo_bytes
            || budget.used + payload.len() > budget.max
        {
            stats.ooo_overflow += 1;
            // Skip to the first buffered segment (or this one) and deliver from there.
            let first = self.ooo.keys().next().copied().unwrap_or(off).min(off);
            self.gap_to(first, stats, out);
            if first == off {
                self.deliver_in_order(payload, missing, budget, stats, out);
                return;
            }
            self.drain(budget, stats, out);
            if self.next >= off {
                let (p, m) = trim_front(payload, missing, self.next - off);
                if !p.is_empty() || m > 0 {
                    self.deliver_in_order(p, m, budget, stats, out);
                }
                return;
            }
            if self.ooo_bytes + payload.len() > self.max_ooo_bytes
                || budget.used + payload.len() > budget.max
            {
                self.gap_to(off, stats, out);
                self.deliver_in_order(payload, missing, budget, stats, out);
                return;
            }
        }
        budget.used += payload.len();
        self.ooo_bytes += payload.len();
        let held = Held {
            data: payload.to_vec(),
            missing,
        };
        if let Some(old) = self.ooo.insert(off, held) {
            budget.used -= old.data.len().min(budget.used);
            self.ooo_bytes -= old.data.len();
        }
    }

    /// The peer acknowledged up to `ack`: bytes below it that never reached the capture are
    /// a gap now (they will not be retransmitted).
    pub fn acked<F: FnMut(Chunk<'_>)>(
        &mut self,
        ack: u32,
        budget: &mut Budget,
        stats: &mut ReassemblyStats,
        out: &mut F,
    ) {
        let Some(base) = self.base else { return };
        let off = self.offset(base, ack);
        if off <= self.next as i64 {
            return;
        }
        let mut target = off as u64;
        if let Some(f) = self.fin_at {
            // The FIN takes one sequence number but is no stream byte.
            target = target.min(f);
        }
        if let Some(&first) = self.ooo.keys().next() {
            target = target.min(first);
        }
        if target > self.next {
            self.gap_to(target, stats, out);
            self.drain(budget, stats, out);
        }
    }

    /// Deliver everything buffered, with gaps for the holes (connection end).
    pub fn flush<F: FnMut(Chunk<'_>)>(
        &mut self,
        budget: &mut Budget,
        stats: &mut ReassemblyStats,
        out: &mut F,
    ) {
        while let Some(&first) = self.ooo.keys().next() {
            self.gap_to(first, stats, out);
            self.drain(budget, stats, out);
        }
        if let Some(f) = self.fin_at
            && f > self.next
        {
            self.gap_to(f, stats, out);
        }
    }

    /// Release buffered bytes without delivering them (flow dropped).
    pub fn release(&mut self, budget: &mut Budget) {
        budget.used -= self.ooo_bytes.min(budget.used);
        self.ooo_bytes = 0;
        self.ooo.clear();
    }

    fn gap_to<F: FnMut(Chunk<'_>)>(&mut self, to: u64, stats: &mut ReassemblyStats, out: &mut F) {
        if to > self.next {
            let len = to - self.next;
            stats.gaps += 1;
            stats.gap_bytes += len;
            self.next = to;
            out(Chunk::Gap(len));
        }
    }

    fn deliver_in_order<F: FnMut(Chunk<'_>)>(
        &mut self,
        payload: &[u8],
        missing: u32,
        budget: &mut Budget,
        stats: &mut ReassemblyStats,
        out: &mut F,
    ) {
        if !payload.is_empty() {
            self.next += payload.len() as u64;
            out(Chunk::Data(payload));
        }
        if missing > 0 {
            let to = self.next + u64::from(missing);
            self.gap_to(to, stats, out);
        }
        self.drain(budget, stats, out);
    }

    /// Deliver buffered segments that now touch the delivery edge.
    fn drain<F: FnMut(Chunk<'_>)>(
        &mut self,
        budget: &mut Budget,
        stats: &mut ReassemblyStats,
        out: &mut F,
    ) {
        while let Some(entry) = self.ooo.first_entry() {
            let off = *entry.key();
            if off > self.next {
                break;
            }
            let held = entry.remove();
            budget.used -= held.data.len().min(budget.used);
            self.ooo_bytes -= held.data.len();
            let skip = self.next - off;
            let (rest, missing) = trim_front(&held.data, held.missing, skip);
            if rest.is_empty() && missing == 0 {
                stats.retransmitted_segments += 1;
                continue;
            }
            if skip > 0 {
                stats.overlapping_segments += 1;
            }
            if !rest.is_empty() {
                self.next += rest.len() as u64;
                out(Chunk::Data(rest));
            }
            if missing > 0 {
                let to = self.next + u64::from(missing);
                self.gap_to(to, stats, out);
            }
        }
    }
}

/// Drop `skip` bytes from the front of (payload, then `missing` cut bytes).
fn trim_front(payload: &[u8], missing: u32, skip: u64) -> (&[u8], u32) {
    if (skip as usize) < payload.len() {
        (&payload[skip as usize..], missing)
    } else {
        let over = skip - payload.len() as u64;
        (&[][..], (u64::from(missing).saturating_sub(over)) as u32)
    }
}

#[cfg(test)]
mod tests;
