use super::*;

/// Ethernet + 802.1Q + IPv4 + TCP "GET /" built by hand (annotated).
fn vlan_tcp_frame() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend([0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]); // dst, src MAC
    f.extend([0x81, 0x00, 0x00, 0x64]); // 802.1Q, VLAN 100
    f.extend([0x08, 0x00]); // IPv4
    let payload = b"GET /";
    let total = 20 + 20 + payload.len() as u16;
    f.extend([
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend([10, 0, 0, 1, 10, 0, 0, 2]); // src, dst
    f.extend([0x9c, 0x40, 0x00, 0x50]); // ports 40000 -> 80
    f.extend(1000u32.to_be_bytes()); // seq
    f.extend(0u32.to_be_bytes()); // ack
    f.extend([0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]); // offset 5, PSH|ACK
    f.extend(payload);
    f
}

/// (source port, destination port, payload, missing bytes) of the decoded segment.
type Seen = (u16, u16, Vec<u8>, u32);

fn decode_one(link: LinkType, data: &[u8], orig: u32) -> (Option<Seen>, DecodeStats) {
    let mut d = Decoder::default();
    let mut got = None;
    d.decode(link, 7, data, orig, |s| {
        got = Some((s.src_port, s.dst_port, s.payload.to_vec(), s.missing));
    });
    (got, d.stats.clone())
}

#[test]
fn vlan_ipv4_tcp() {
    let f = vlan_tcp_frame();
    let (got, _) = decode_one(LinkType::Ethernet, &f, f.len() as u32);
    assert_eq!(got, Some((40000, 80, b"GET /".to_vec(), 0)));
}

#[test]
fn snaplen_cut_reports_missing_bytes() {
    let f = vlan_tcp_frame();
    let cut = &f[..f.len() - 3];
    let (got, stats) = decode_one(LinkType::Ethernet, cut, f.len() as u32);
    assert_eq!(got, Some((40000, 80, b"GE".to_vec(), 3)));
    assert_eq!(stats.truncated, 1);
}

#[test]
fn sll2_and_null_headers() {
    let f = vlan_tcp_frame();
    let ip = &f[18..];
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    sll2.extend(ip);
    assert!(
        decode_one(LinkType::LinuxSll2, &sll2, sll2.len() as u32)
            .0
            .is_some()
    );
    let mut null = vec![2, 0, 0, 0];
    null.extend(ip);
    assert!(
        decode_one(LinkType::Null, &null, null.len() as u32)
            .0
            .is_some()
    );
    let mut sll = vec![0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
    sll.extend(ip);
    assert!(
        decode_one(LinkType::LinuxSll, &sll, sll.len() as u32)
            .0
            .is_some()
    );
}

#[test]
fn every_prefix_of_a_frame_is_safe() {
    let f = vlan_tcp_frame();
    for link in [
        LinkType::Ethernet,
        LinkType::RawIp,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Null,
    ] {
        for n in 0..=f.len() {
            let _ = decode_one(link, &f[..n], f.len() as u32);
        }
    }
}

#[test]
fn fragments_reassemble_and_caps_hold() {
    // UDP datagram of 24 bytes (8 header + 16 payload) in two IPv4 fragments.
    let udp: Vec<u8> = [0x13, 0x88, 0x00, 0x35, 0, 24, 0, 0]
        .into_iter()
        .chain(b"0123456789abcdef".iter().copied())
        .collect();
    let frag = |off: u16, more: bool, body: &[u8]| {
        let total = 20 + body.len() as u16;
        let flags_off = (if more { 0x2000 } else { 0 }) | (off / 8);
        let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0x12, 0x34];
        p.extend(flags_off.to_be_bytes());
        p.extend([64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend(body);
        p
    };
    let mut d = Decoder::default();
    let mut got = Vec::new();
    d.decode(LinkType::RawIp, 1, &frag(16, false, &udp[16..]), 36, |s| {
        got.push(s.payload.to_vec())
    });
    assert!(got.is_empty());
    d.decode(LinkType::RawIp, 2, &frag(0, true, &udp[..16]), 36, |s| {
        got.push(s.payload.to_vec())
    });
    assert_eq!(got, vec![b"0123456789abcdef".to_vec()]);
    assert_eq!((d.stats.fragments, d.stats.reassembled), (2, 1));
    assert_eq!(d.defrag().held_bytes(), 0);

    // Datagram cap: the oldest incomplete datagram is evicted.
    let mut small = Decoder::new(Defragmenter::new(1 << 20, 2, 30_000_000_000));
    for id in 0..5u8 {
        let mut p = frag(0, true, &udp[..16]);
        p[5] = id;
        small.decode(LinkType::RawIp, 1, &p, p.len() as u32, |_| {});
    }
    assert_eq!(small.defrag().datagrams(), 2);
    assert_eq!(small.defrag().stats.evicted, 3);
}

#[test]
fn ip_text_matches_display() {
    use std::net::Ipv4Addr;
    for v in [
        0u32,
        1,
        9,
        10,
        99,
        100,
        255,
        0x0a00_0001,
        0xc0a8_0a64,
        u32::MAX,
        0x6400_0a09,
    ] {
        let ip = IpAddr::V4(Ipv4Addr::from(v));
        assert_eq!(crate::dissect::ip_text(ip), ip.to_string());
    }
}

#[test]
fn fast_and_general_paths_agree() {
    // The same frame through the fast path and (cut by one byte of snaplen) the general one.
    let f = vlan_tcp_frame();
    let (fast, _) = decode_one(LinkType::Ethernet, &f, f.len() as u32);
    let mut padded = f.clone();
    padded.extend([0, 0, 0, 0]); // Ethernet trailer padding: not part of the IP packet
    let (trailer, _) = decode_one(LinkType::Ethernet, &padded, padded.len() as u32);
    assert_eq!(fast, trailer);
    let (general, _) = decode_one(LinkType::Ethernet, &f, f.len() as u32 + 1);
    let (fast, general) = (fast.unwrap(), general.unwrap());
    assert_eq!(
        (fast.0, fast.1, &fast.2),
        (general.0, general.1, &general.2)
    );
}
