#![no_main]
// The pipeline's plaintext-stream entry (the TLS source's way in) on arbitrary chunk sequences:
// each chunk is 1 control byte (bit 0: sent or received; bit 1: a new stream id; bits 2-7: an
// offset jump forward or back, to exercise gaps and repeats), 1 length byte, then that many
// bytes of data. Buffers must be released at the end.
use libfuzzer_sys::fuzz_target;
use pipeline::{Pipeline, StreamChunk, StreamOrigin};
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU64;

fuzz_target!(|data: &[u8]| {
    let mut pipe = Pipeline::default();
    let mut out = Vec::new();
    let origin = StreamOrigin {
        pid: 1,
        executable: Some("fuzz".into()),
    };
    let mut id = NonZeroU64::MIN;
    let mut offsets = [0u64; 2];
    let mut ts = 1_700_000_000_000_000_000u64;
    let mut rest = data;
    while let [ctl, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(n);
        rest = next;
        if ctl & 2 != 0 {
            id = id.saturating_add(1);
            offsets = [0, 0];
        }
        let side = usize::from(ctl & 1);
        let jump = i64::from(ctl >> 2) - 16;
        let offset = offsets[side].saturating_add_signed(jump);
        ts += 1_000;
        pipe.stream(
            &StreamChunk {
                ts,
                local: (IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000),
                peer: (IpAddr::V4(Ipv4Addr::LOCALHOST), 443),
                stream: id,
                sent: side == 0,
                offset,
                data: chunk,
                origin: &origin,
            },
            &mut out,
        );
        offsets[side] = offset.saturating_add(n as u64).max(offsets[side]);
        out.clear();
    }
    pipe.finish(&mut out);
    assert_eq!(pipe.buffered_bytes(), 0);
});
