#![no_main]
// Redis dissector on arbitrary bytes, fed in pieces from both directions with a gap.
use libfuzzer_sys::fuzz_target;
use pipeline::protocols::redis::RedisDissector;
use schemas::Transport;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut d = RedisDissector::new();
    common::drive(&mut d, Transport::Tcp, data);
});
