#![no_main]
// HTTP/2 dissector on arbitrary bytes, fed in pieces from both directions with a gap.
use libfuzzer_sys::fuzz_target;
use pipeline::protocols::http2::Http2;
use schemas::Transport;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut d = Http2::new(&common::meta(Transport::Tcp));
    common::drive(&mut d, Transport::Tcp, data);
});
