#![no_main]
// MySQL dissector on arbitrary bytes, fed in pieces from both directions with a gap.
use libfuzzer_sys::fuzz_target;
use pipeline::protocols::mysql::MysqlDissector;
use schemas::Transport;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut d = MysqlDissector::default();
    common::drive(&mut d, Transport::Tcp, data);
});
