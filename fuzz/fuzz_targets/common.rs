// Shared by the fuzz targets: feed one dissector both directions of a flow, the way the flow
// layer does (unconsumed bytes kept and fed again), with a gap and the close.
use std::net::{IpAddr, Ipv4Addr};

use pipeline::dissect::{AnomalyCounts, Direction, Dissector, Emitter, FlowMeta, Progress};
use schemas::Transport;

pub fn meta(transport: Transport) -> FlowMeta {
    FlowMeta {
        client: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000),
        server: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 80),
        transport,
    }
}

/// Input layout: byte 0 = piece size, byte 1 = where the client's bytes end (in 1/256ths),
/// then the bytes; client bytes go first, then the server's, then a gap, then the close.
pub fn drive(d: &mut dyn Dissector, transport: Transport, data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let step = usize::from(data[0]).max(1);
    let body = &data[2..];
    let split = body.len() * usize::from(data[1]) / 256;
    let (mut out, mut an) = (Vec::new(), AnomalyCounts::default());
    let mut em = Emitter {
        meta: meta(transport),
        origin: None,
        anomalies: &mut an,
        out: &mut out,
        descriptors: None,
        topic_ids: None,
    };
    let mut ts = 0;
    for (dir, bytes) in [
        (Direction::ToServer, &body[..split]),
        (Direction::ToClient, &body[split..]),
    ] {
        let mut pending: Vec<u8> = Vec::new();
        for piece in bytes.chunks(step) {
            ts += 1;
            pending.extend_from_slice(piece);
            match d.feed(dir, &pending, ts, &mut em) {
                Progress::Done => pending.clear(),
                Progress::Incomplete { consumed, .. } => {
                    assert!(consumed <= pending.len(), "consumed beyond the input");
                    pending.drain(..consumed);
                }
                Progress::Error(_) | Progress::Finished => return,
            }
        }
        if !pending.is_empty() {
            d.cut(dir, &pending, ts, &mut em);
        }
        d.gap(dir, 17, ts, &mut em);
    }
    d.close(ts + 1, &mut em);
    for e in &out {
        assert!(e.end_time_unix_nano >= e.start_time_unix_nano || e.end_time_unix_nano == 0);
    }
}
