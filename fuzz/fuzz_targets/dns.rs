#![no_main]
// DNS dissector on arbitrary bytes, as TCP (length-prefixed, in pieces) and as UDP datagrams.
use libfuzzer_sys::fuzz_target;
use pipeline::protocols::dns::DnsDissector;
use schemas::Transport;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut d = DnsDissector::new(Transport::Tcp);
    common::drive(&mut d, Transport::Tcp, data);
    let mut d = DnsDissector::new(Transport::Udp);
    common::drive(&mut d, Transport::Udp, data);
});
