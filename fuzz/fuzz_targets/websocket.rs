#![no_main]
// WebSocket frames (after an upgrade) on arbitrary bytes, fed in pieces from both directions
// with a gap.
use libfuzzer_sys::fuzz_target;
use pipeline::protocols::websocket::WebSocket;
use schemas::Transport;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut d = WebSocket::new();
    common::drive(&mut d, Transport::Tcp, data);
});
