use super::*;

/// Small deterministic PRNG (xorshift) so the tests need no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the consumer saw: bytes, with `None` for each byte reported lost.
fn collect(out: &mut Vec<Option<u8>>) -> impl FnMut(Chunk<'_>) + '_ {
    |c| match c {
        Chunk::Data(d) => out.extend(d.iter().map(|&b| Some(b))),
        Chunk::Gap(n) => out.extend(std::iter::repeat_n(None, n as usize)),
    }
}

fn budget() -> Budget {
    Budget {
        used: 0,
        max: 1 << 30,
    }
}

#[test]
fn in_order_is_delivered_without_buffering() {
    let mut r = Reassembler::new(1 << 20);
    let (mut b, mut st, mut out) = (budget(), ReassemblyStats::default(), Vec::new());
    r.syn(99);
    r.segment(
        100,
        b"hello ",
        0,
        false,
        &mut b,
        &mut st,
        &mut collect(&mut out),
    );
    r.segment(
        106,
        b"world",
        0,
        false,
        &mut b,
        &mut st,
        &mut collect(&mut out),
    );
    assert_eq!(
        out.iter().map(|b| b.unwrap()).collect::<Vec<_>>(),
        b"hello world"
    );
    assert_eq!(r.buffered(), 0);
    assert_eq!(st, ReassemblyStats::default());
}

#[test]
fn sequence_wraps_around() {
    let mut r = Reassembler::new(1 << 20);
    let (mut b, mut st, mut out) = (budget(), ReassemblyStats::default(), Vec::new());
    let isn = u32::MAX - 3;
    r.syn(isn);
    // Out of order across the wrap: the second segment first.
    r.segment(
        isn.wrapping_add(5),
        b"efgh",
        0,
        false,
        &mut b,
        &mut st,
        &mut collect(&mut out),
    );
    r.segment(
        isn.wrapping_add(1),
        b"abcd",
        0,
        false,
        &mut b,
        &mut st,
        &mut collect(&mut out),
    );
    assert_eq!(
        out.iter().map(|b| b.unwrap()).collect::<Vec<_>>(),
        b"abcdefgh"
    );
    assert_eq!(st.out_of_order_segments, 1);
}

#[test]
fn ack_beyond_hole_reports_gap() {
    let mut r = Reassembler::new(1 << 20);
    let (mut b, mut st, mut out) = (budget(), ReassemblyStats::default(), Vec::new());
    r.syn(0);
    r.segment(1, b"abc", 0, false, &mut b, &mut st, &mut collect(&mut out));
    // Bytes 4..=10 never captured; the peer acknowledges them.
    r.acked(11, &mut b, &mut st, &mut collect(&mut out));
    r.segment(
        11,
        b"xyz",
        0,
        false,
        &mut b,
        &mut st,
        &mut collect(&mut out),
    );
    let want: Vec<Option<u8>> = b"abc"
        .iter()
        .map(|&c| Some(c))
        .chain(std::iter::repeat_n(None, 7))
        .chain(b"xyz".iter().map(|&c| Some(c)))
        .collect();
    assert_eq!(out, want);
    assert_eq!((st.gaps, st.gap_bytes), (1, 7));
}

#[test]
fn snaplen_cut_is_a_gap_after_the_bytes_present() {
    let mut r = Reassembler::new(1 << 20);
    let (mut b, mut st, mut out) = (budget(), ReassemblyStats::default(), Vec::new());
    r.syn(0);
    r.segment(1, b"GET", 0, false, &mut b, &mut st, &mut collect(&mut out));
    r.segment(4, b" /x", 5, false, &mut b, &mut st, &mut collect(&mut out));
    r.segment(12, b"ok", 0, false, &mut b, &mut st, &mut collect(&mut out));
    assert_eq!(out.len(), 13);
    assert_eq!(out[6..11], [None; 5]);
    assert_eq!(out[11], Some(b'o'));
}

#[test]
fn per_flow_cap_forces_a_skip_and_frees_memory() {
    let mut r = Reassembler::new(10);
    let (mut b, mut st, mut out) = (budget(), ReassemblyStats::default(), Vec::new());
    r.syn(0);
    r.segment(
        101,
        &[1; 8],
        0,
        false,
        &mut b,
        &mut st,
        &mut collect(&mut out),
    );
    assert_eq!(r.buffered(), 8);
    // A second out-of-order segment overflows the cap: skip to the first held one.
    r.segment(
        201,
        &[2; 8],
        0,
        false,
        &mut b,
        &mut st,
        &mut collect(&mut out),
    );
    assert_eq!(st.ooo_overflow, 1);
    assert!(r.buffered() <= 10);
    assert_eq!(out[..100], [None; 100]);
    assert_eq!(out[100..108], [Some(1); 8]);
    r.flush(&mut b, &mut st, &mut collect(&mut out));
    r.release(&mut b);
    assert_eq!(b.used, 0);
}

/// Shuffle, duplicate and drop segments of a known stream: the reassembled bytes and the gap
/// positions must match a naive reference (the stream with the dropped ranges blanked).
#[test]
fn matches_naive_reference_under_shuffle_duplicate_and_loss() {
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let len = 200 + rng.below(3000) as usize;
        let stream: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Cut into segments.
        let mut segs = Vec::new();
        let mut pos = 0;
        while pos < len {
            let n = (1 + rng.below(120) as usize).min(len - pos);
            segs.push((pos, n));
            pos += n;
        }
        // Drop some (never the last, so the end is known), duplicate some (possibly with a
        // different split: an overlapping retransmission), then shuffle nearby segments.
        let mut expected: Vec<Option<u8>> = stream.iter().map(|&b| Some(b)).collect();
        let mut sent = Vec::new();
        for (i, &(p, n)) in segs.iter().enumerate() {
            if i + 1 < segs.len() && rng.below(10) == 0 {
                expected[p..p + n].iter_mut().for_each(|b| *b = None);
                continue;
            }
            sent.push((p, n));
            if rng.below(8) == 0 {
                let extra = rng.below(n as u64) as usize;
                let start = p.saturating_sub(extra);
                sent.push((start, n + (p - start)));
            }
        }
        for i in 0..sent.len() {
            let j = (i + rng.below(4) as usize).min(sent.len() - 1);
            sent.swap(i, j);
        }
        // A duplicate that covers dropped bytes restores them.
        for &(p, n) in &sent {
            for k in p..p + n {
                expected[k] = Some(stream[k]);
            }
        }
        let isn = rng.next() as u32;
        let mut r = Reassembler::new(1 << 20);
        let (mut b, mut st, mut out) = (budget(), ReassemblyStats::default(), Vec::new());
        r.syn(isn);
        for &(p, n) in &sent {
            let seq = isn.wrapping_add(1).wrapping_add(p as u32);
            r.segment(
                seq,
                &stream[p..p + n],
                0,
                false,
                &mut b,
                &mut st,
                &mut collect(&mut out),
            );
        }
        r.flush(&mut b, &mut st, &mut collect(&mut out));
        r.release(&mut b);
        // Trailing dropped bytes that nothing follows cannot be known to exist.
        let last_known = expected
            .iter()
            .rposition(|b| b.is_some())
            .map_or(0, |i| i + 1);
        assert_eq!(out, expected[..last_known], "seed {seed}");
        assert_eq!(b.used, 0);
    }
}
