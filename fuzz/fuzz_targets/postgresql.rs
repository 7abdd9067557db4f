#![no_main]
// PostgreSQL dissector on arbitrary bytes, fed in pieces from both directions with a gap.
use libfuzzer_sys::fuzz_target;
use pipeline::protocols::postgresql::PostgresqlDissector;
use schemas::Transport;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let mut d = PostgresqlDissector::default();
    common::drive(&mut d, Transport::Tcp, data);
});
